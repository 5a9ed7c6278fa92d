/*
 * clipdex.h - the one public header of libclipdex (core/).
 *
 * libclipdex is the library behind both programs: the CLIP engine (model
 * loading, the vision and text transformers, the BPE tokenizer), image
 * decoding and CLIP preprocessing, and (later) the index store.  Anything
 * not declared in this file is not API.
 *
 * Conventions, for every function below:
 *   - Every exported symbol is prefixed cdx_ / CDX_.
 *   - Functions that can fail return a cdx_status.  On failure a one-line
 *     message naming the file and the reason is available from
 *     cdx_last_error() (thread-local, valid until the next failing call on
 *     the same thread).  Output parameters are left untouched on failure.
 *   - The library never prints and never exits.  Diagnostics that are not
 *     errors (warnings) go through the log callback (cdx_log_set).
 *   - Heap objects are created by _open/_new and destroyed by _close/_free;
 *     caller-provided structs are filled by _init/_load and emptied by
 *     _release.  Every destructor accepts NULL.
 *   - Sizes are size_t / int64_t.
 *
 * Dimension legend used in shape comments throughout core/:
 *   B  batch (images)            T  tokens (text sequence length)
 *   N  patches + 1 (class token) C  model width (hidden size)
 *   H  attention heads           D  head size (C / H)
 *   F  MLP width (intermediate)  E  embedding (projection) dimension
 *   S  image side (image_size)   P  patch side
 */
#ifndef CLIPDEX_H
#define CLIPDEX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CDX_VERSION "0.1.0"

/* ------------------------------------------------------------------ */
/* Status codes and errors                                             */
/* ------------------------------------------------------------------ */

typedef enum cdx_status {
    CDX_OK = 0,
    CDX_ERR_ARG,         /* the caller passed an invalid argument */
    CDX_ERR_IO,          /* a file could not be opened, read or written */
    CDX_ERR_FORMAT,      /* an input file is malformed, corrupt or truncated */
    CDX_ERR_UNSUPPORTED, /* well-formed but uses a feature we do not support */
    CDX_ERR_LIMIT,       /* exceeds a configured limit (pixels, file size) */
    CDX_ERR_NOMEM,       /* out of memory */
    CDX_ERR_MODEL,       /* the model directory is inconsistent */
    CDX_ERR_STORE,       /* the index store failed */
    CDX_ERR_BUSY,        /* a lock is held by another process */
    CDX_ERR_INTERNAL     /* a bug: an invariant did not hold */
} cdx_status;

/* Short stable name of a status ("ok", "io", "format", ...). Static string. */
const char *cdx_status_name(cdx_status st);

/* The message of the last failure on this thread, one line, usually
 * "PATH: reason".  Never NULL (empty string when nothing failed).  Owned by
 * the library; valid until the next failing call on this thread. */
const char *cdx_last_error(void);

/* ------------------------------------------------------------------ */
/* Logging                                                             */
/* ------------------------------------------------------------------ */

enum { CDX_LOG_DEBUG = 0, CDX_LOG_INFO = 1, CDX_LOG_WARN = 2, CDX_LOG_ERROR = 3 };

/* msg is one line without a newline, valid only during the call. */
typedef void (*cdx_log_fn)(int level, const char *msg, void *user);

/* Install the log sink.  Messages below min_level are not even formatted.
 * fn == NULL discards everything (the default).  Not thread-safe against
 * concurrent logging: call it at start-up.  The sink itself may be called
 * from any thread and must be thread-safe. */
void cdx_log_set(cdx_log_fn fn, void *user, int min_level);

/* ------------------------------------------------------------------ */
/* Threads                                                             */
/* ------------------------------------------------------------------ */

/* The one place the compute thread budget is decided: sets OpenBLAS's
 * thread count and the number of threads core/ uses for its own
 * element-wise work.  n <= 0 means "number of online CPUs".  Call before
 * running models; not thread-safe with inference in flight. */
void cdx_threads_set(int n);
int cdx_threads_get(void);

/* ------------------------------------------------------------------ */
/* Tokenizer (CLIP BPE)                                                */
/* ------------------------------------------------------------------ */

typedef struct cdx_tokenizer cdx_tokenizer;

/* Load vocab.json and merges.txt (Hugging Face layout).  *out is owned by
 * the caller and freed with cdx_tokenizer_free. */
cdx_status cdx_tokenizer_open(const char *vocab_json, const char *merges_txt,
                              cdx_tokenizer **out);
void cdx_tokenizer_free(cdx_tokenizer *tok);

/* Tokenize text (UTF-8, NUL-terminated) as OpenAI's clip.tokenize does:
 * cleanup (ftfy subset, HTML unescape twice, NFC, whitespace, lower case),
 * pre-tokenize, BPE.  Writes start token, ids, end token into ids[] (no
 * padding); when longer than max_len the ids are truncated and the end
 * token is kept last.  *n_ids receives the count (<= max_len).  max_len
 * must be >= 2.  Thread-safe (the BPE cache is internally locked).
 * Invalid UTF-8 is an error (CDX_ERR_ARG). */
cdx_status cdx_tokenizer_encode(cdx_tokenizer *tok, const char *text,
                                int max_len, int32_t *ids, int *n_ids);

/* The special token ids, as found in the vocabulary. */
int32_t cdx_tokenizer_sot(const cdx_tokenizer *tok);
int32_t cdx_tokenizer_eot(const cdx_tokenizer *tok);

/* ------------------------------------------------------------------ */
/* Images and CLIP preprocessing                                       */
/* ------------------------------------------------------------------ */

/* A decoded image: 8-bit RGB, row-major, no padding (stride = width*3).
 * Filled by cdx_image_load; emptied by cdx_image_release. */
typedef struct cdx_image {
    uint32_t width, height;
    uint8_t *rgb; /* width*height*3 bytes, owned by the struct */
} cdx_image;

/* Decode a JPEG or PNG file (format from magic bytes) to RGB as Pillow's
 * Image.convert("RGB") does.  No EXIF orientation is applied (exact mode:
 * the reference processor applies none). */
cdx_status cdx_image_load(const char *path, cdx_image *out);
void cdx_image_release(cdx_image *img);

/* preprocessor_config.json, as transformers' CLIPImageProcessor reads it. */
typedef struct cdx_preprocess_cfg {
    int do_convert_rgb, do_resize, do_center_crop, do_rescale, do_normalize;
    int shortest_edge;        /* resize target of the shortest side */
    int crop_width, crop_height;
    int resample;             /* PIL constant; only 3 (BICUBIC) is supported */
    double rescale_factor;    /* usually 1/255 */
    float image_mean[3], image_std[3];
} cdx_preprocess_cfg;

/* Parse a preprocessor_config.json file into *out. */
cdx_status cdx_preprocess_cfg_load(const char *path, cdx_preprocess_cfg *out);

/* The CLIPImageProcessor defaults (224, bicubic, OpenAI mean/std). */
void cdx_preprocess_cfg_default(cdx_preprocess_cfg *out);

/* Exact CLIPImageProcessor preprocessing, bit-compatible with Pillow's
 * BICUBIC resize: resize shortest edge, center crop, rescale, normalise.
 * out receives 3*crop_height*crop_width floats, (3,H,W) planar (CHW).
 * Thread-safe. */
cdx_status cdx_preprocess_exact(const cdx_preprocess_cfg *cfg,
                                const cdx_image *img, float *out);

/* ------------------------------------------------------------------ */
/* The CLIP model                                                      */
/* ------------------------------------------------------------------ */

typedef struct cdx_model cdx_model;

/* Which towers to load.  Only the loaded towers' weights are touched. */
#define CDX_TOWER_TEXT 1u
#define CDX_TOWER_VISION 2u

typedef struct cdx_tower_info {
    int hidden;        /* C */
    int layers;
    int heads;         /* H */
    int intermediate;  /* F */
    const char *act;   /* "quick_gelu" or "gelu" */
    double ln_eps;
    int image_size;    /* vision only: S */
    int patch_size;    /* vision only: P */
    int max_positions; /* text only: context length */
    int vocab_size;    /* text only */
} cdx_tower_info;

typedef struct cdx_model_info {
    const char *dir;
    int projection_dim;       /* E */
    cdx_tower_info text, vision;
    const char *weights_file; /* the file or index the weights came from */
    const char *dtype;        /* storage dtype of the weights: F32, F16, BF16 */
    int64_t n_params;         /* all parameters in the checkpoint */
    float logit_scale;        /* exp(logit_scale tensor) */
} cdx_model_info;

/* Open a Hugging Face CLIP model directory.  towers is a mask of
 * CDX_TOWER_*.  *out is owned by the caller (cdx_model_close).
 * A model handle must not be used from two threads at once (it owns its
 * activation buffers); open one per thread if needed. */
cdx_status cdx_model_open(const char *dir, unsigned towers, cdx_model **out);
void cdx_model_close(cdx_model *m);

/* Borrowed pointers, valid while the model is open. */
const cdx_model_info *cdx_model_get_info(const cdx_model *m);
const cdx_preprocess_cfg *cdx_model_preprocess(const cdx_model *m);
cdx_tokenizer *cdx_model_tokenizer(cdx_model *m); /* NULL without text */

/* Text -> embedding.  out receives E floats, L2-normalised when normalize
 * is non-zero, else the raw projection. */
cdx_status cdx_model_encode_text(cdx_model *m, const char *text, float *out,
                                 int normalize);
cdx_status cdx_model_encode_tokens(cdx_model *m, const int32_t *ids, int n,
                                   float *out, int normalize);

/* Images -> embeddings.  pixels is (B,3,S,S) as cdx_preprocess_exact
 * produces; out is (B,E).  Any batch size; large batches are split. */
cdx_status cdx_model_encode_images(cdx_model *m, const float *pixels, int batch,
                                   float *out, int normalize);

#ifdef __cplusplus
}
#endif
#endif /* CLIPDEX_H */
