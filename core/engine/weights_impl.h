/*
 * weights_impl.h - private structures shared by weights.c (the common
 * registry, the public entry points, dtype conversion), safetensors.c
 * (model.safetensors and shards) and torchbin.c (pytorch_model.bin).
 * Nothing here is used outside those three files.
 *
 * A loader validates one file's header and appends one source and its
 * tensors to the registry; weights.c then sorts the registry by name,
 * rejects duplicates, and serves lookups.  Tensor data is only touched
 * by cdx_weights_f32, through cdx_st_data (a pointer into the mapping)
 * or cdx_tb_read (bytes copied out of the zip).
 *
 * Tensors whose dtype is not F32/F16/BF16 (I64 position_ids buffers in
 * older checkpoints, for instance) are validated and kept in the registry
 * so that cdx_weights_f32 can name them in a CDX_ERR_UNSUPPORTED error,
 * but cdx_weights_find/count/at do not show them: cdx_tensor_info has no
 * way to express their dtype, and they are buffers, not parameters.
 */
#ifndef CDX_WEIGHTS_IMPL_H
#define CDX_WEIGHTS_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "weights.h"

/* Both formats store little-endian data, and the F32 fast path hands out
 * pointers straight into the file.  A big-endian port would need a byte
 * swap in every conversion; refuse to build rather than load garbage. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "clipdex weight loading assumes a little-endian host");

typedef enum cdx_wsrc_kind { CDX_WSRC_SAFETENSORS, CDX_WSRC_TORCHZIP, CDX_WSRC_TORCHLEGACY } cdx_wsrc_kind;

/* One file the tensors come from. */
typedef struct cdx_wsource {
    char *path;            /* "DIR/NAME": every message names it */
    cdx_wsrc_kind kind;
    const uint8_t *map;    /* safetensors, torch legacy: the whole file, read-only */
    size_t map_len;
    void *zip;             /* torch zip: a zip_t*, opened read-only */
} cdx_wsource;

/* One named tensor.  Sizes were validated at open with checked
 * arithmetic, so offset + nbytes never overflows and lies inside the
 * file (safetensors) or the storage entry (torch). */
typedef struct cdx_wtensor {
    cdx_tensor_info info;  /* info.name points at name */
    char *name;
    const char *dtype_name; /* "F32", "I64", ...: static string */
    size_t elem_size;       /* bytes per element of the stored dtype */
    bool float_dtype;       /* dtype is F32, F16 or BF16 (info.dtype valid) */
    const char *unsupported; /* static reason f32 must refuse, or NULL */
    int src;                /* index into cdx_weights.src */
    size_t offset;          /* mapped sources: from file start; torch zip: inside the entry */
    size_t nbytes;          /* numel * elem_size */
    uint64_t zip_index;     /* torch: the storage entry */
    const float *f32;       /* filled by the first cdx_weights_f32 */
    float *owned;           /* converted or copied data we must free */
} cdx_wtensor;

struct cdx_weights {
    char *dir;
    char *path;            /* the file or index the weights come from */
    cdx_wsource *src;
    int n_src;
    size_t cap_src;
    cdx_wtensor *t;        /* may move while loading; stable after open */
    size_t n_t, cap_t;
    size_t *by_name;       /* indices into t, sorted by name: every tensor */
    size_t *visible;       /* float tensors only, sorted: find/count/at */
    size_t n_visible;
};

/* Append a source; *idx receives its index.  Takes ownership of path
 * (freed by cdx_weights_close even on failure). */
cdx_status cdx_weights_add_source(cdx_weights *w, char *path, cdx_wsrc_kind kind, int *idx);

/* Append a zeroed tensor named name (copied); the pointer is valid until
 * the next add.  NULL only on out of memory (message already set). */
cdx_wtensor *cdx_weights_add_tensor(cdx_weights *w, int src, const char *name);

/* Look up a stored dtype by its safetensors name ("F32", "I64", ...).
 * Returns the table's static copy of the name, or NULL for a name outside
 * the safetensors specification.  dt is only meaningful when is_float. */
const char *cdx_wdtype_lookup(const char *name, size_t *elem_size, bool *is_float,
                              cdx_dtype *dt);

/* Record dtype and shape on t, computing numel and nbytes with checked
 * arithmetic.  On overflow returns CDX_ERR_FORMAT naming file and tensor.
 * More than CDX_MAX_DIMS dims is not an error here: the tensor is marked
 * unsupported (only requesting it fails). */
cdx_status cdx_wtensor_set_layout(cdx_wtensor *t, const char *file, const char *dtype_name,
                                  int ndim, const int64_t *shape);

/* "[49408,512]" ("[]" for a scalar) into buf, cut short if it does not
 * fit; returns buf. */
const char *cdx_wfmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape);

/* safetensors.c: map and validate one .safetensors file, adding it as a
 * source and its tensors to w.  Errors name path. */
cdx_status cdx_st_load(cdx_weights *w, const char *path);

/* torchbin.c: open and validate a torch.save file, zip or legacy format
 * (restricted unpickler), adding it as a source and its tensors to w. */
cdx_status cdx_tb_load(cdx_weights *w, const char *path);
/* Copy t's nbytes bytes of storage data into dst. */
cdx_status cdx_tb_read(cdx_weights *w, const cdx_wtensor *t, void *dst);
/* Close a zip handle (NULL-safe): keeps libzip out of weights.c. */
void cdx_tb_close_zip(void *zip);

/* The plain scalar conversions; cdx_f16_to_f32 picks the F16C path when
 * the CPU has it.  Exposed so the test can compare the two. */
void cdx_f16_to_f32_scalar(const uint16_t *src, float *dst, size_t n);
/* Whether cdx_f16_to_f32 uses F16C on this machine (for test output). */
bool cdx_f16_has_simd(void);

#endif
