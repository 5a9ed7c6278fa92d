/*
 * weights.h - read-only access to a checkpoint's named tensors (internal).
 *
 * One interface over the three layouts Hugging Face CLIP repositories ship:
 *   model.safetensors                      (mmap'd, header fully validated)
 *   model-0000N-of-0000M.safetensors + model.safetensors.index.json
 *   pytorch_model.bin                      (torch.save zip; restricted
 *                                           unpickler: nothing is executed)
 * cdx_weights_open picks the first present in that order.
 *
 * Tensors are found by their transformers CLIPModel state_dict name.  The
 * model asks for each tensor as float32 with the shape it expects:
 * cdx_weights_f32 validates dtype and shape and returns a pointer that
 * stays valid until cdx_weights_close (straight into the mapping for
 * aligned little-endian F32, else a converted copy owned by the weights).
 * Tensors never asked for are never converted or read (so opening only the
 * text tower leaves the vision weights untouched on disk).
 */
#ifndef CDX_WEIGHTS_H
#define CDX_WEIGHTS_H

#include <stdint.h>

#include "clipdex.h"

typedef enum cdx_dtype { CDX_DT_F32, CDX_DT_F16, CDX_DT_BF16 } cdx_dtype;

#define CDX_MAX_DIMS 8

typedef struct cdx_tensor_info {
    const char *name;
    cdx_dtype dtype;
    int ndim;
    int64_t shape[CDX_MAX_DIMS];
    int64_t numel;
} cdx_tensor_info;

typedef struct cdx_weights cdx_weights;

/* Open the weights in model directory dir.  Every tensor header is
 * validated here (offsets inside the file, sizes matching dtype x shape,
 * supported dtypes for all tensors the model may need); tensor data is not
 * read.  Errors name the file and, where one is at fault, the tensor. */
cdx_status cdx_weights_open(const char *dir, cdx_weights **out);
void cdx_weights_close(cdx_weights *w);

/* Open one weights file: PATH ending in .safetensors, else a torch .bin
 * (zip or legacy, through the restricted unpickler). */
cdx_status cdx_weights_open_file(const char *path, cdx_weights **out);

/* NULL if absent.  Borrowed, valid until close. */
const cdx_tensor_info *cdx_weights_find(const cdx_weights *w, const char *name);

/* Number of tensors, and the i-th (for summaries and parameter counts). */
int cdx_weights_count(const cdx_weights *w);
const cdx_tensor_info *cdx_weights_at(const cdx_weights *w, int i);

/* The tensor `name` as float32, checking it has exactly ndim dims equal to
 * shape[].  A missing tensor or wrong shape is CDX_ERR_MODEL, a dtype we
 * cannot compute with (I64 buffers, strided torch views) is
 * CDX_ERR_UNSUPPORTED, both as "FILE: tensor NAME: reason".  Non-float
 * tensors are not listed by find/count/at.  *out borrowed until close.
 * Not thread-safe (converts lazily); the model calls it at open only. */
cdx_status cdx_weights_f32(cdx_weights *w, const char *name, int ndim,
                           const int64_t *shape, const float **out);

/* Tell the kernel the float32 data at p (n floats, from cdx_weights_f32)
 * is not needed for now: when it points into a read-only file mapping
 * its pages leave the process's memory (a later read faults them back in
 * from the file); anything else is left alone.  For a model that runs
 * from converted copies (bf16, int8). */
void cdx_weights_drop_pages(const cdx_weights *w, const float *p, size_t n);

/* The file (or index file) the weights were read from: borrowed. */
const char *cdx_weights_path(const cdx_weights *w);
/* The storage dtype shared by most tensors ("F32", "F16", "BF16"). */
const char *cdx_weights_dtype_name(const cdx_weights *w);

/* Convert n half/bfloat16 values to float32 (exposed for tests). */
void cdx_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void cdx_bf16_to_f32(const uint16_t *src, float *dst, size_t n);

#endif
