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

/* OpenCLIP: the same files read as open_clip's SimpleTokenizer: the
 * special tokens are "<start_of_text>" / "<end_of_text>" (same ids), so a
 * literal "<|endoftext|>" in the text is ordinary text. */
cdx_status cdx_tokenizer_open_openclip(const char *vocab_json, const char *merges_txt,
                                       cdx_tokenizer **out);

/* Tokenize text (UTF-8, NUL-terminated) as OpenAI's clip.tokenize does:
 * cleanup (ftfy subset, HTML unescape twice, NFC, whitespace, lower case),
 * pre-tokenize, BPE.  Writes start token, ids, end token into ids[] (no
 * padding); when longer than max_len the ids are truncated and the end
 * token is kept last.  *n_ids receives the count (<= max_len).  max_len
 * must be >= 2.  Thread-safe (the BPE cache is internally locked).
 * Invalid UTF-8 is an error (CDX_ERR_ARG). */
cdx_status cdx_tokenizer_encode(cdx_tokenizer *tok, const char *text,
                                int max_len, int32_t *ids, int *n_ids);

/* The special token ids, as found in the vocabulary.  SentencePiece
 * tokenizers: sot is the start token when one is added (else -1), eot the
 * end token. */
int32_t cdx_tokenizer_sot(const cdx_tokenizer *tok);
int32_t cdx_tokenizer_eot(const cdx_tokenizer *tok);

/* ---- SigLIP / SigLIP 2: the same handle over SentencePiece ----
 * A cdx_tokenizer is CLIP's BPE or, for SigLIP and SigLIP 2, a
 * SentencePiece model with the processor's text handling around it
 * (core/engine/sptok.h lists the steps).  cdx_tokenizer_encode then
 * writes exactly max_len ids: the processor's input_ids with
 * padding="max_length", truncation=True, max_length=max_len. */

/* Open the tokenizer of a model directory, by what it carries:
 * config.json model_type "siglip" with spiece.model (SigLIP) or
 * tokenizer.model (SigLIP 2, Gemma), with tokenizer_config.json;
 * otherwise vocab.json + merges.txt (CLIP).  Errors name the file. */
cdx_status cdx_tokenizer_open_dir(const char *model_dir, cdx_tokenizer **out);

/* The fixed length a SentencePiece tokenizer pads to (config.json's
 * text_config.max_position_embeddings); 0 for CLIP BPE (no padding). */
int cdx_tokenizer_context(const cdx_tokenizer *tok);

/* One line naming the kind of tokenizer (static or owned by tok). */
const char *cdx_tokenizer_describe(const cdx_tokenizer *tok);

/* ------------------------------------------------------------------ */
/* Images and CLIP preprocessing                                       */
/* ------------------------------------------------------------------ */

/* A decoded image: 8-bit RGB, row-major, no padding (stride = width*3).
 * Filled by cdx_image_load / cdx_image_decode; emptied by
 * cdx_image_release. */
typedef struct cdx_image {
    uint32_t width, height;
    uint8_t *rgb; /* width*height*3 bytes, owned by the struct */
    /* What the file's Pillow mode means for a resize done before the
     * conversion to RGB (OpenCLIP's preprocessing; the CLIP path ignores
     * both): alpha is width*height bytes (owned) when the mode has alpha
     * (PNG RGBA / LA), else NULL; nearest is set for the modes Pillow
     * resizes with NEAREST whatever is asked (P, 1: PNG palette and
     * 1-bit grey). */
    uint8_t *alpha;
    int nearest;
    /* Mode P: its palette (256 RGB entries, owned), whose entry
     * fill_color pads a "longest" resize; else NULL. */
    uint8_t *palette;
} cdx_image;

/* The exact path: decode an image file at full size, as stored (no EXIF
 * orientation: the reference processor applies none), to the RGB pixels
 * Pillow's Image.open(path).convert("RGB") gives.  The format comes from
 * the magic bytes, not the name.
 *
 * JPEG and PNG are bit-exact with Pillow: grey is replicated, palettes
 * expanded, alpha dropped (not composited), tRNS and gAMA ignored; JPEG
 * via libjpeg with default settings, CMYK/YCCK as Pillow converts them.
 * One deliberate difference: 16-bit samples keep their high byte (Pillow
 * does that for 16-bit colour, but clips 16-bit grey to 255).  WebP, GIF
 * (first frame), TIFF (first page) and HEIF/AVIF (primary image, which
 * Pillow cannot open) are decoded as cdx_image_decode describes.
 *
 * On success out->rgb is owned by *out (cdx_image_release frees it).
 * Errors: CDX_ERR_IO (cannot open/read, not a regular file),
 * CDX_ERR_FORMAT (unknown format, corrupt, truncated, bad CRC),
 * CDX_ERR_UNSUPPORTED (e.g. 12-bit or lossless JPEG), CDX_ERR_LIMIT (more
 * than 200 megapixels, file over 1 GiB), CDX_ERR_NOMEM; the message is
 * "PATH: reason".  Non-fatal decoder warnings go to the log sink.
 * Thread-safe. */
cdx_status cdx_image_load(const char *path, cdx_image *out);
void cdx_image_release(cdx_image *img);

/* preprocessor_config.json, as transformers' CLIPImageProcessor reads it. */
typedef struct cdx_preprocess_cfg {
    int do_convert_rgb, do_resize, do_center_crop, do_rescale, do_normalize;
    int shortest_edge;        /* resize target of the shortest side */
    int crop_width, crop_height;
    int resample;             /* PIL constant: 3 BICUBIC or 2 BILINEAR */
    double rescale_factor;    /* usually 1/255 */
    float image_mean[3], image_std[3];
    /* size = {"height": H, "width": W} (or [H, W]): resize to exactly
     * resize_width x resize_height, ignoring shortest_edge.  Both 0 in the
     * usual {"shortest_edge": N} / N form. */
    int resize_width, resize_height;
    /* ---- OpenCLIP (family CDX_FAMILY_OPENCLIP): open_clip's eval
     * transform instead of CLIPImageProcessor (cdx_preprocess_openclip).
     * openclip 0 for every other family. */
    int openclip;
    int oc_resize_mode;       /* CDX_OC_RESIZE_* (preprocess_cfg.resize_mode) */
    int oc_fill;              /* preprocess_cfg.fill_color (resize_mode longest) */
} cdx_preprocess_cfg;

#define CDX_OC_RESIZE_SHORTEST 0 /* Resize(S) then CenterCrop(S) */
#define CDX_OC_RESIZE_LONGEST 1  /* ResizeKeepRatio(S, longest=1) then CenterCropOrPad(S) */
#define CDX_OC_RESIZE_SQUASH 2   /* Resize((S, S)) */

/* Parse a preprocessor_config.json file into *out.  Keys follow
 * CLIPImageProcessor: size ({"shortest_edge": N}, N, {"height","width"},
 * [H, W]), crop_size (N, {"height","width"}, [H, W]), resample, do_resize,
 * do_center_crop, do_rescale, rescale_factor, do_normalize, image_mean,
 * image_std (3 numbers or one), do_convert_rgb.  Missing keys take the
 * defaults of cdx_preprocess_cfg_default; unknown keys are ignored.
 * Errors (CDX_ERR_IO, CDX_ERR_FORMAT) name the file and the key. */
cdx_status cdx_preprocess_cfg_load(const char *path, cdx_preprocess_cfg *out);

/* The CLIPImageProcessor defaults (224, bicubic, OpenAI mean/std). */
void cdx_preprocess_cfg_default(cdx_preprocess_cfg *out);

/* Exact CLIPImageProcessor preprocessing, bit-compatible with Pillow's
 * BICUBIC resize: resize shortest edge, center crop (zero-padding an
 * image smaller than the crop), rescale, normalise, each step only when
 * its do_* flag is set.  out receives 3*H*W floats, (3,H,W) planar (CHW),
 * where (W,H) is given by cdx_preprocess_output_size: the crop size in
 * the usual configuration.  Errors: CDX_ERR_ARG, CDX_ERR_UNSUPPORTED
 * (resample other than 3 or 2), CDX_ERR_LIMIT, CDX_ERR_NOMEM.  Thread-safe. */
cdx_status cdx_preprocess_exact(const cdx_preprocess_cfg *cfg,
                                const cdx_image *img, float *out);

/* The (width, height) of cdx_preprocess_exact's output for an input of
 * width x height: the crop size when do_center_crop, else the resized
 * size (or the input size without do_resize). */
/* open_clip's eval transform (transform.py image_transform, is_train
 * False) of cfg (openclip set): resize in the image's own mode (palette
 * and 1-bit images nearest, images with alpha premultiplied, as Pillow
 * does), centre crop (offsets by Python's round()), RGB, ToTensor,
 * normalise.  out receives 3*S*S floats, S = cfg->crop_width. */
cdx_status cdx_preprocess_openclip(const cdx_preprocess_cfg *cfg, const cdx_image *img,
                                   float *out);

cdx_status cdx_preprocess_output_size(const cdx_preprocess_cfg *cfg, uint32_t width,
                                      uint32_t height, uint32_t *out_w, uint32_t *out_h);

/* ---- Image ingestion (photo libraries): metadata, orientation, fast path ----
 * Implemented by the files of core/image/. */

/* What a photo carries besides its pixels.  Strings are NUL-terminated,
 * "" when unknown. */
typedef struct cdx_image_meta {
    char format[8];           /* "jpeg", "png", "webp", "heif", "avif", "tiff",
                                 "gif" */
    uint32_t width, height;   /* stored pixel size, before orientation (and
                                 before any DCT scaling) */
    int orientation;          /* EXIF Orientation 1..8 (1 when absent/invalid);
                                 for TIFF the Orientation tag; HEIF: 1 */
    int64_t taken_at;         /* DateTimeOriginal (else DateTimeDigitized) as
                                 unix seconds: UTC when OffsetTimeOriginal is
                                 recorded, else the local time read as UTC;
                                 INT64_MIN when unknown */
    int has_tz_offset;        /* OffsetTimeOriginal was present */
    int tz_offset_min;        /* its value in minutes east of UTC */
    char make[64], model[64]; /* camera */
    int has_gps;
    double gps_lat, gps_lon;  /* degrees, south/west negative */
    char warning[256];        /* the first non-fatal problem (malformed EXIF,
                                 invalid orientation, decoder warning), without
                                 the path; "" when none */
} cdx_image_meta;

typedef struct cdx_decode_opts {
    int apply_orientation;    /* rotate/flip the pixels upright per EXIF */
    uint32_t min_side;        /* > 0: the short side the image will be
                                 resized to (pass the model's shortest_edge);
                                 the decoder may then return a smaller image:
                                 JPEG is DCT-scaled to the smallest of 1/8,
                                 1/4, 1/2 whose short side is still >=
                                 2 * min_side (else full size), so the resize
                                 still reduces 2x or more; 0: full size */
    uint64_t max_pixels;      /* 0: 200 megapixels (stored size) */
    uint64_t max_file_bytes;  /* 0: 1 GiB */
} cdx_decode_opts;

/* Decode any supported format with metadata.  Formats (from the magic
 * bytes): JPEG, PNG, WebP (first frame of an animation), HEIF/HEIC and
 * AVIF (primary image), TIFF (first page), GIF (first frame).  Colours
 * follow Pillow's convert("RGB") (alpha dropped, palettes expanded, grey
 * replicated, 16-bit scaled to 8).  EXIF is read from JPEG APP1, PNG
 * eXIf, the WebP EXIF chunk and the HEIF Exif item; TIFF tags directly.
 *
 * opts may be NULL (all zero).  img may be NULL: metadata only, read from
 * the headers without decoding any pixel (a fast probe; truncated pixel
 * data is then not noticed).  meta may be NULL.  With apply_orientation
 * the pixels are made upright (all 8 orientations).  HEIF images are
 * always returned with their own transformations (crop, rotation, mirror)
 * applied, as HEIF defines them, and report orientation 1: their EXIF
 * Orientation describes the same rotation and is not applied twice.
 * Limits (opts->max_file_bytes, opts->max_pixels) are checked before
 * reading or allocating.
 *
 * Errors are one line "PATH: reason" (CDX_ERR_IO, _FORMAT, _UNSUPPORTED,
 * _LIMIT, _NOMEM as for cdx_image_load); a malformed EXIF block is not an
 * error (meta->warning says so).  Nothing is printed.  On failure img and
 * meta are untouched.  Thread-safe. */
cdx_status cdx_image_decode(const char *path, const cdx_decode_opts *opts, cdx_image *img,
                            cdx_image_meta *meta);

/* cdx_image_decode from a buffer holding a whole file.  name (may be
 * NULL) is used in messages only.  data is only read, and only during the
 * call. */
cdx_status cdx_image_decode_mem(const void *data, size_t size, const char *name,
                                const cdx_decode_opts *opts, cdx_image *img,
                                cdx_image_meta *meta);


/* 64-bit DCT perceptual hash of an image (grayscale, area-resized to
 * 32x32, 2-D DCT, the 8x8 lowest frequencies without the DC row and
 * column against their median).  Near-identical pictures differ in few
 * bits (Hamming distance).  Apply orientation first so that rotated
 * copies match.  Thread-safe. */
cdx_status cdx_phash(const cdx_image *img, uint64_t *out);

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

/* Model families.  Each is loaded from its own published layout and run
 * exactly as its reference implementation runs it. */
typedef enum cdx_family {
    CDX_FAMILY_CLIP = 0,   /* transformers CLIPModel (config.json model_type "clip") */
    CDX_FAMILY_SIGLIP,     /* transformers SiglipModel, SentencePiece spiece.model */
    CDX_FAMILY_SIGLIP2,    /* SigLIP 2 fixed resolution: model_type "siglip" with
                              Gemma's tokenizer.model */
    CDX_FAMILY_OPENCLIP,   /* open_clip_config.json + open_clip_* weights */
} cdx_family;

/* How image-text similarity becomes a probability (moderate, serve). */
typedef enum cdx_scoring {
    CDX_SCORING_SOFTMAX = 0, /* CLIP, OpenCLIP: softmax over the labels of
                                logit_scale * cosine */
    CDX_SCORING_SIGMOID,     /* SigLIP: sigmoid(logit_scale * cosine + logit_bias),
                                each label on its own */
} cdx_scoring;

/* "clip", "siglip", "siglip2", "openclip" (static strings). */
const char *cdx_family_name(cdx_family f);

typedef struct cdx_model_info {
    const char *dir;
    cdx_family family;
    cdx_scoring scoring;
    int projection_dim;       /* E */
    cdx_tower_info text, vision;
    const char *weights_file; /* the file or index the weights came from */
    const char *dtype;        /* storage dtype of the weights: F32, F16, BF16 */
    int64_t n_params;         /* all parameters in the checkpoint */
    float logit_scale;        /* exp(logit_scale tensor) */
    float logit_bias;         /* SIGMOID scoring: the logit_bias tensor; else 0 */
    const char *config_file;  /* the file that defines the model: DIR/config.json,
                                 or DIR/open_clip_config.json (OpenCLIP); with
                                 weights_file, what identifies the model in a store */
} cdx_model_info;

/* Open a model directory: Hugging Face CLIP, or SigLIP / SigLIP 2 when
 * config.json says model_type "siglip" (cdx_model_info.family tells which;
 * man/clipdex.1 describes the detection).  towers is a mask of
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
/* ids as cdx_tokenizer_encode gives them; SigLIP models take exactly the
 * padded context (n = text.max_positions). */
cdx_status cdx_model_encode_tokens(cdx_model *m, const int32_t *ids, int n,
                                   float *out, int normalize);

/* Images -> embeddings.  pixels is (B,3,S,S) as cdx_preprocess_exact
 * produces; out is (B,E).  Any batch size; large batches are split. */
cdx_status cdx_model_encode_images(cdx_model *m, const float *pixels, int batch,
                                   float *out, int normalize);

/* How cdx_model_image_input decodes.  Both end in cdx_preprocess_exact
 * with the model's preprocessor_config.json; they differ only by the
 * decode. */
typedef enum {
    CDX_INPUT_FAST = 0,  /* indexing and image queries: EXIF orientation
                            applied, JPEG DCT-scaled toward the model's
                            shortest_edge (cdx_decode_opts.min_side) */
    CDX_INPUT_EXACT = 1  /* what the reference CLIPImageProcessor sees:
                            full size, stored orientation */
} cdx_input_mode;

typedef struct cdx_input_opts {
    cdx_input_mode mode;
    uint64_t max_pixels;      /* limits as cdx_decode_opts (0: defaults) */
    uint64_t max_file_bytes;
    const void *data;         /* non-NULL: the file's bytes (size of them),
                                 already read; path then only names it in
                                 messages (cdx_image_decode_mem) */
    size_t size;
    cdx_image_meta *meta;     /* non-NULL: filled as cdx_image_decode does */
    uint64_t *phash;          /* non-NULL: the perceptual hash of the decoded
                                 (in FAST mode upright) image, and *phash_ok
                                 set to whether it could be computed */
    int *phash_ok;
} cdx_input_opts;

/* An image file -> the model's input, the one path for indexing and for
 * image queries: decode (opts->mode), check that the model's
 * preprocessing gives its image_size S (else CDX_ERR_MODEL), preprocess.
 * out receives (3,S,S) floats, one image of cdx_model_encode_images's
 * pixels.  opts may be NULL (FAST, default limits).  Errors are one line
 * "PATH: reason" as for cdx_image_decode.  Reads only the model's
 * configuration: several threads may call it on one model at once (unlike
 * the encode calls). */
cdx_status cdx_model_image_input(const cdx_model *m, const char *path, const cdx_input_opts *opts,
                                 float *out);

/* Arithmetic precision of the transformer blocks' matrix products (layer
 * norms, softmax, GELU and the residual stream are always float32).  A
 * model opens at F32, the exact path the parity tests check.  The
 * vectors of one checkpoint at any precision are one vector space.
 *   BF16  weights rounded to bfloat16 once, inputs per product, float32
 *         accumulation (AVX512_BF16);
 *   INT8  per-output-channel int8 weights, per-token int8 activations
 *         smoothed against outlier channels, int32 accumulation (VNNI);
 *   AUTO  what cdx_precision_auto says this CPU runs natively. */
typedef enum cdx_precision {
    CDX_PRECISION_AUTO = 0,
    CDX_PRECISION_F32,
    CDX_PRECISION_BF16,
    CDX_PRECISION_INT8,
} cdx_precision;

/* "auto", "f32", "bf16", "int8" (static strings). */
const char *cdx_precision_name(cdx_precision p);
/* Parse one of those names; 0 on success, -1 if s is none of them. */
int cdx_precision_parse(const char *s, cdx_precision *out);
/* What AUTO resolves to on this CPU (never AUTO), with a static one-line
 * reason in *why (may be NULL): bf16 where AVX512_BF16 exists, else int8
 * where AVX-512 VNNI or AVX-VNNI exists, else f32.  The environment
 * variable CLIPDEX_ISA caps the CPU level seen (tests use it). */
cdx_precision cdx_precision_auto(const char **why);
/* The CPU level the kernels use, e.g. "avx512_bf16" (static). */
const char *cdx_cpu_level(void);

/* Where converted (bf16/int8) weights are cached: $CLIPDEX_CACHE if it is
 * a directory path, else $XDG_CACHE_HOME/clipdex/weights, else
 * ~/.cache/clipdex/weights; NULL when CLIPDEX_CACHE=off or there is no
 * home.  Freed with free().  cdx_model_set_precision writes a tower's
 * converted weights there the first time and maps them afterwards. */
char *cdx_weights_cache_dir(void);

/* Switch m to precision p (AUTO resolved as above), preparing converted
 * weights for the loaded towers (once per precision; F32 frees them).
 * Bad p is CDX_ERR_ARG; out of memory leaves m at its old precision. */
cdx_status cdx_model_set_precision(cdx_model *m, cdx_precision p);
/* The precision m runs (never AUTO), and a static reason string for it
 * in *why (may be NULL). */
cdx_precision cdx_model_get_precision(const cdx_model *m, const char **why);

/* ------------------------------------------------------------------ */
/* Content hashing                                                     */
/* ------------------------------------------------------------------ */

/* Content hashes are SHA-256 (32 bytes): cryptographic, so a hostile file
 * cannot be crafted to collide with another photo and inherit its vector,
 * and fast enough (OpenSSL uses the CPU's SHA instructions: about 1.7 GB/s
 * here, more than a disk delivers).  Identical to `sha256sum`. */
#define CDX_HASH_SIZE 32

/* Hash n bytes.  Thread-safe. */
cdx_status cdx_hash_buf(const void *data, size_t n, uint8_t out[CDX_HASH_SIZE]);

/* Hash a whole file, streaming it; *size (if non-NULL) receives the number
 * of bytes hashed.  Thread-safe. */
cdx_status cdx_hash_file(const char *path, uint8_t out[CDX_HASH_SIZE], int64_t *size);

/* Lower-case hex of a hash into out (65 bytes with the NUL). */
void cdx_hash_hex(const uint8_t hash[CDX_HASH_SIZE], char out[2 * CDX_HASH_SIZE + 1]);

/* ------------------------------------------------------------------ */
/* Index store                                                         */
/* ------------------------------------------------------------------ */

/*
 * The index store lives in a data directory:
 *   clipdex.db            SQLite (WAL): the source of truth (files,
 *                         models, vectors, change log, moderation, meta)
 *   index-<model>.faiss   FAISS index of one model's vectors: a derived
 *                         cache recording the change-log position it
 *                         reflects; replayed forward or rebuilt at open
 *                         (Flat files are mapped, not read: opening a
 *                         100k-vector store takes milliseconds)
 *   writer.lock           held (flock) by the one writer
 *
 * One writer (the daemon) and any number of readers (the query tool) may
 * use a store at the same time.  A reader always sees one consistent,
 * committed state, including what the writer committed since its last
 * FAISS save.  Vectors belong to a model (see cdx_store_use_model); vectors
 * of different models never meet in one FAISS index or one search.
 *
 * A file row links a path to the vector of its content: files with
 * identical bytes (same SHA-256) share one vector per model.  Vectors are
 * stored as float16, L2-normalised, so inner product is cosine similarity.
 *
 * A cdx_store handle must not be used by two threads at once.
 */
typedef struct cdx_store cdx_store;

/* Progress of long operations (rebuilding a FAISS index): what is a short
 * phrase, done/total counts.  Called from the thread using the store. */
typedef void (*cdx_store_progress_fn)(const char *what, int64_t done, int64_t total,
                                      void *user);

typedef struct cdx_store_opts {
    int writer;                 /* non-zero: take the writer lock (create
                                   the store if needed); else read-only */
    const char *index_factory;  /* writer: FAISS index_factory string for
                                   this model's index (NULL: "Flat"); the
                                   store wraps it in IndexIDMap2 with the
                                   inner-product metric.  Types that need
                                   training (IVF, PQ) are built as Flat
                                   until train_min vectors exist. */
    const char *search_params;  /* FAISS ParameterSpace string applied to
                                   the loaded index, e.g. "nprobe=16" or
                                   "efSearch=128"; NULL: none */
    int64_t save_every;         /* writer: save the FAISS file after this
                                   many changes (<= 0: 5000) */
    int64_t train_min;          /* vectors needed before training (<= 0:
                                   max(10000, 40 * IVF lists)) */
    cdx_store_progress_fn progress;  /* NULL: no progress reports */
    void *progress_user;
} cdx_store_opts;

/* The default data directory: $CLIPDEX_DATA, else $XDG_DATA_HOME/clipdex,
 * else $HOME/.local/share/clipdex.  Heap string, caller frees; NULL when
 * none of these variables is set. */
char *cdx_store_default_dir(void);

/* Open the store in dir.  A writer creates dir and the database when
 * missing, takes the writer lock (CDX_ERR_BUSY naming the holder's pid
 * when another writer has it) and migrates an older schema forward.  A
 * reader needs an existing store (CDX_ERR_IO saying how to create one).
 * A store written by a newer clipdex is refused (CDX_ERR_UNSUPPORTED).
 * opts may be NULL (reader, defaults).  *out is freed with
 * cdx_store_close. */
cdx_status cdx_store_open(const char *dir, const cdx_store_opts *opts, cdx_store **out);

/* Writer: commit nothing pending (an open transaction is rolled back),
 * save the FAISS file if it has unsaved changes, release the lock.
 * Accepts NULL. */
void cdx_store_close(cdx_store *s);

/* The identity of a CLIP model as the store records it. */
typedef struct cdx_store_model {
    const char *key;   /* identity: hex SHA-256 of config + weights header
                          (cdx_store_model_key); vectors are tied to it */
    const char *name;  /* human name, e.g. "clip-vit-base-patch32" */
    const char *dir;   /* where it was loaded from (informative) */
    int dim;           /* embedding dimension E */
    const char *vision_key; /* the image tower's identity (cdx_model_vision_key)
                          or NULL: a model whose key the store does not know
                          but whose image tower made a vector space there
                          uses that space (no re-embedding; see
                          cdx_store_use_model) */
} cdx_store_model;

/* The model key: SHA-256 over config.json's bytes, the weights file's size
 * and its first MiB (the safetensors header and the first tensors).
 * out receives 64 hex digits + NUL. */
cdx_status cdx_store_model_key(const char *config_path, const char *weights_path,
                               char out[2 * CDX_HASH_SIZE + 1]);

/* The image tower's key: SHA-256 over exactly what decides the model's
 * image vectors (the vision configuration, the preprocessing, the image
 * tower's and its projection's float32 values; core/engine/tower_key.c).
 * Models that differ only in their text towers (clipdex train --lock
 * image) share it.  Reads the whole image tower (tenths of a second).
 * out receives 64 hex digits + NUL. */
cdx_status cdx_model_vision_key(const cdx_model *m, char out[2 * CDX_HASH_SIZE + 1]);

/* Select the vector space to work in and load its FAISS index (replaying
 * the change log since the file was saved; rebuilding it from SQLite, with
 * progress reports, when it is missing, stale or corrupt).  A writer
 * registers a new model; a reader looks the model up by key and fails
 * with CDX_ERR_STORE (naming the models the store has) when there is
 * none.  *model_id (may be NULL) receives the model's id.
 * With m->vision_key: a key the store does not know, whose image tower
 * is that of a vector space there, selects that space (its id) and is
 * remembered for next time (schema/005_tower_identity.sql); a known
 * model with no recorded vision key gets it recorded.  Searching that
 * space with this model's text tower needs no re-embedding. */
cdx_status cdx_store_use_model(cdx_store *s, const cdx_store_model *m, int64_t *model_id);

/* Writer: the precision (F32, BF16, INT8; not AUTO) recorded with the
 * vectors written from now on.  Unset, new vectors record NULL. */
cdx_status cdx_store_set_precision(cdx_store *s, cdx_precision p);
/* Model model_id's vectors by the precision that computed them:
 * counts[CDX_PRECISION_F32 / BF16 / INT8], and counts[0] (AUTO) for
 * vectors that recorded none (written before precision was recorded). */
cdx_status cdx_store_precision_counts(cdx_store *s, int64_t model_id, int64_t counts[4]);

/* The models the store knows, for messages and status. */
typedef struct cdx_store_model_info {
    int64_t id;
    char *key, *name, *dir, *index_factory;
    int dim;
    int64_t n_vectors;
    int current;       /* the model the writer used last */
    int64_t n_shared;  /* other models with the same image tower that use
                          this vector space (schema 005 model_keys) */
} cdx_store_model_info;
cdx_status cdx_store_models(cdx_store *s, cdx_store_model_info **out, size_t *n);
void cdx_store_models_free(cdx_store_model_info *v, size_t n);

/* ---- files ---- */

#define CDX_TIME_UNKNOWN INT64_MIN

/* What the daemon knows about a file.  Unknown values: 0 for numbers,
 * NULL for strings, CDX_TIME_UNKNOWN for taken_at, has_* = 0. */
typedef struct cdx_file_meta {
    const char *path;           /* bytes; need not be UTF-8 */
    uint64_t dev, ino;
    int64_t size;               /* bytes */
    int64_t mtime_ns;           /* st_mtim in nanoseconds */
    uint8_t hash[CDX_HASH_SIZE];/* SHA-256 of the content */
    int has_hash;
    int32_t width, height;      /* pixels, as stored (before orientation) */
    int32_t orientation;        /* EXIF 1..8 */
    int64_t taken_at;           /* EXIF DateTimeOriginal, unix seconds */
    const char *camera_make, *camera_model;
    double gps_lat, gps_lon;
    int has_gps;
    uint64_t phash;             /* 64-bit perceptual hash */
    int has_phash;
} cdx_file_meta;

enum { CDX_FILE_OK = 0, CDX_FILE_ERROR = 1 };

/* A file row as stored. */
typedef struct cdx_file_info {
    int64_t id;
    cdx_file_meta meta;
    const char *ext;            /* lower-case extension without the dot */
    int state;                  /* CDX_FILE_OK / CDX_FILE_ERROR */
    const char *error;          /* why indexing failed (state ERROR) */
    int64_t indexed_at;         /* unix seconds of the last store write */
    int64_t vector_id;          /* 0 when none (error state) */
    int64_t model_id;           /* model of vector_id */
} cdx_file_info;

/* Strings of a cdx_file_info filled by cdx_store_get_file or inside
 * search hits are heap copies freed by this; those passed to a
 * foreach callback belong to the store and live only during the call. */
void cdx_file_info_release(cdx_file_info *fi);

/* A deep copy of src into *dst (for keeping a foreach callback's row):
 * its strings are heap copies, freed with cdx_file_info_release.
 * CDX_ERR_NOMEM leaves *dst untouched. */
cdx_status cdx_file_info_copy(const cdx_file_info *src, cdx_file_info *dst);

/* Writer: group writes into one transaction (one per daemon batch).
 * Without begin, each write commits by itself.  The in-memory FAISS index
 * follows each commit; if updating or saving it fails, the commit still
 * stands (the index is a cache, repaired at the next sync or open) and the
 * failure is logged as a warning. */
cdx_status cdx_store_begin(cdx_store *s);
cdx_status cdx_store_commit(cdx_store *s);
void cdx_store_rollback(cdx_store *s);

/* Writer: the id of the current model's vector for a content hash, or 0
 * in *vector_id when the content has not been embedded with it: the
 * daemon's test before spending an embedding on a file. */
cdx_status cdx_store_find_vector(cdx_store *s, const uint8_t hash[CDX_HASH_SIZE],
                                 int64_t *vector_id);

/* Writer: record a successfully indexed file (insert or update by path).
 * m->has_hash is required.  vec (E floats, any norm; normalised here) is
 * needed only when the content has no vector for the current model yet;
 * otherwise it may be NULL and is ignored.  A vector no file refers to
 * any more is removed.  *file_id may be NULL. */
cdx_status cdx_store_put_file(cdx_store *s, const cdx_file_meta *m, const float *vec,
                              int64_t *file_id);

/* Writer: record a file that failed to index, with the reason (one line).
 * The daemon retries it only when its size/mtime/inode change. */
cdx_status cdx_store_put_error(cdx_store *s, const cdx_file_meta *m, const char *error);

/* Writer: forget the file at path (*n = 0 or 1), or every file under the
 * directory dir (*n = count).  n may be NULL. */
cdx_status cdx_store_remove_file(cdx_store *s, const char *path, int64_t *n);
cdx_status cdx_store_remove_under(cdx_store *s, const char *dir, int64_t *n);

/* Writer: a rename or move inside the indexed tree, of a file or of a
 * directory (every path under from/ moves under to/); rows already at the
 * target are replaced.  No re-embedding.  *n (may be NULL): rows moved. */
cdx_status cdx_store_rename(cdx_store *s, const char *from, const char *to, int64_t *n);

/* Writer: save the FAISS file now (atomically).  Done automatically every
 * save_every changes and at close. */
cdx_status cdx_store_save(cdx_store *s);

/* Look a file up by path: *found = 0 when absent (out untouched). */
cdx_status cdx_store_get_file(cdx_store *s, const char *path, cdx_file_info *out, int *found);

/* Search filters, evaluated together with the vector search (not by
 * dropping results after the top k).  A zeroed struct filters nothing
 * (and selects files in state OK); NULL is the same for search and "every
 * file, any state" for foreach. */
#define CDX_FILE_ANY (-1)
typedef struct cdx_store_filter {
    int64_t after, before;      /* taken_at (else mtime) in [after, before),
                                   unix seconds; 0 = open end */
    const char *under;          /* only paths under this directory */
    const char *camera;         /* substring of "make model", ASCII case-
                                   insensitive */
    const char *const *exts;    /* extensions without dot, any case */
    size_t n_exts;
    const uint8_t *hash;        /* only files with this content hash */
    int state;                  /* foreach: CDX_FILE_OK (0), CDX_FILE_ERROR
                                   or CDX_FILE_ANY; search: ignored (OK) */
} cdx_store_filter;

/* Call fn for every file matching f (NULL: all files), in path order, or
 * in hash order with CDX_FOREACH_BY_HASH.  CDX_FOREACH_STALE: only files
 * in state OK whose vector is not of the current model (to re-embed after
 * a model change).  fn returns non-zero to stop early.  All rows come from
 * one consistent snapshot.  fn must not call the store. */
#define CDX_FOREACH_BY_HASH 1u
#define CDX_FOREACH_STALE 2u
typedef int (*cdx_store_file_fn)(const cdx_file_info *fi, void *user);
cdx_status cdx_store_foreach_file(cdx_store *s, const cdx_store_filter *f, unsigned flags,
                                  cdx_store_file_fn fn, void *user);

/* ---- search ---- */

typedef struct cdx_store_hit {
    float score;                /* cosine similarity */
    cdx_file_info file;
} cdx_store_hit;

/* The k files nearest to query (E floats, normalised here) in the current
 * model's space, best first, among files matching f (NULL: all), with
 * score >= min_score (use -2 for none).  Files sharing content share a
 * score and are each listed.  *hits is freed with cdx_store_hits_free. */
cdx_status cdx_store_search(cdx_store *s, const float *query, size_t k,
                            const cdx_store_filter *f, float min_score,
                            cdx_store_hit **hits, size_t *n_hits);
void cdx_store_hits_free(cdx_store_hit *hits, size_t n);

/* Vector-level range search: every vector of the current model with
 * cosine >= min_score to query, best first, at most max_results (0: no
 * limit).  ids/scores are heap arrays freed with free(). */
cdx_status cdx_store_range_search(cdx_store *s, const float *query, float min_score,
                                  size_t max_results, int64_t **ids, float **scores,
                                  size_t *n);

/* Every pair among the vectors ids[0..n) (distinct ids of the current
 * model) whose cosine is >= min_score, each unordered pair once, as
 * indexes into ids (a < b) with the score.  Exact whatever the index type
 * (the stored vectors are multiplied tile by tile; far faster than one
 * range search per vector).  An id no longer in the store (removed by the
 * writer since the caller listed it) has no pairs.  Long joins report to
 * the store's progress function.  fn runs on the calling thread;
 * returning non-zero from it stops the walk (the call still returns
 * CDX_OK). */
typedef int (*cdx_pair_fn)(void *user, size_t a, size_t b, float score);
cdx_status cdx_store_similar_pairs(cdx_store *s, const int64_t *ids, size_t n, float min_score,
                                   cdx_pair_fn fn, void *user);

/* The arithmetic of cdx_store_similar_pairs' tile products: AUTO (the
 * default: int8 with VNNI, bf16 with AVX512_BF16, else float32), F32,
 * BF16 or INT8 (float32 where this CPU has no native kernel for it).
 * The pairs and their scores do not depend on it: every product comes
 * with a proven error bound, and each pair that could reach min_score is
 * re-checked exactly (score = the dot product summed in double, rounded
 * to float). */
cdx_status cdx_store_set_join_precision(cdx_store *s, cdx_precision p);

/* A stored vector (E floats, normalised, float16-rounded). */
cdx_status cdx_store_get_vector(cdx_store *s, int64_t vector_id, float *out);

/* ---- moderation results, meta, stats ---- */

/* Store the score of one label of a label set for a vector (replacing an
 * older one).  Allowed on reader handles too: it does not touch vectors
 * or FAISS, and waits for the writer's transaction if one is open. */
cdx_status cdx_store_moderation_put(cdx_store *s, int64_t vector_id, const char *labelset,
                                    const char *label, float score, int flagged);

/* Call fn for every stored result of labelset (vector order).  fn returns
 * non-zero to stop. */
typedef int (*cdx_store_moderation_fn)(int64_t vector_id, const char *label, float score,
                                       int flagged, void *user);
cdx_status cdx_store_moderation_foreach(cdx_store *s, const char *labelset,
                                        cdx_store_moderation_fn fn, void *user);

/* Free-form status values (daemon state, last error, images/s ...), kept
 * in the database so `clipdex status` works without the daemon.  Allowed
 * on reader handles.  get: *value is a heap string (caller frees) or NULL
 * when the key is absent. */
cdx_status cdx_store_meta_set(cdx_store *s, const char *key, const char *value);
cdx_status cdx_store_meta_get(cdx_store *s, const char *key, char **value);

/* A one-line note after the writer's pid in DIR/writer.lock, for
 * `clipdex status` when the database itself cannot be written (a full
 * disk): the lock file's first block is allocated already, so writing it
 * needs no new space.  NULL or "" clears it; cut to 1000 bytes.  Writer
 * handles only.  cdx_store_writer_note_read: the note of DIR's running
 * writer as a heap string (caller frees), NULL when there is none. */
cdx_status cdx_store_writer_note(cdx_store *s, const char *note);
char *cdx_store_writer_note_read(const char *dir);

typedef struct cdx_store_stats {
    int64_t n_files, n_ok, n_error;
    int64_t n_vectors;          /* all models */
    int64_t n_models;
    int64_t model_vectors;      /* vectors of the current model */
    int64_t faiss_ntotal;       /* live vectors in the loaded FAISS index */
    int64_t log_head;           /* change-log position of the current model */
    int64_t faiss_saved_pos;    /* position of the FAISS file on disk */
    int64_t db_bytes, faiss_bytes;   /* file sizes; faiss_bytes: every model's index file */
    int schema_version;
    char index_factory[128];    /* configured for the current model */
    char index_built[128];      /* what the loaded index is built as */
} cdx_store_stats;
cdx_status cdx_store_stats_get(cdx_store *s, cdx_store_stats *out);

/* ---- for the web app (clipdex serve): rows by id, label sets, review marks ---- */

/* Look a file up by its id (cdx_file_info.id): *found = 0 when absent. */
cdx_status cdx_store_get_file_by_id(cdx_store *s, int64_t id, cdx_file_info *out, int *found);

/* The label sets that have stored moderation results, sorted.  *out is
 * freed with cdx_store_labelsets_free. */
cdx_status cdx_store_moderation_labelsets(cdx_store *s, char ***out, size_t *n);
void cdx_store_labelsets_free(char **v, size_t n);

/* A person's verdict on a moderation result for a vector and a label:
 * mark "reviewed" or "false_positive", or NULL to clear it.  Allowed on
 * reader handles (one row, like cdx_store_moderation_put).  CDX_ERR_ARG
 * when the vector does not exist. */
cdx_status cdx_store_mark_set(cdx_store *s, int64_t vector_id, const char *label, const char *mark);

/* Every mark, in vector order.  fn returns non-zero to stop. */
typedef int (*cdx_store_mark_fn)(int64_t vector_id, const char *label, const char *mark, void *user);
cdx_status cdx_store_mark_foreach(cdx_store *s, cdx_store_mark_fn fn, void *user);

/* ---- consistency ---- */

/* Verify the store: SQLite integrity and foreign keys, every OK file
 * points to an existing vector of its content, no vector without a file,
 * vector blobs well-formed, and every model's FAISS index (file replayed
 * to the present) holds exactly the live vector ids with the stored
 * values.  Each problem is reported through fn (one line) and counted in
 * *problems.  With repair (writer only) orphans are removed and FAISS
 * indexes are rebuilt and saved, then everything is verified again;
 * *problems then counts what remains. */
/* ---- backup (store_backup.c) ---- */

/* Copy the database to DIR/clipdex.db.backup with SQLite's online backup
 * API: a consistent snapshot of the last commit, readers go on.  The copy
 * must pass PRAGMA quick_check before it replaces the previous backup (a
 * damaged database never overwrites the last good copy: CDX_ERR_FORMAT);
 * written under a temporary name, synced, renamed.  Writer handles,
 * outside a transaction. */
cdx_status cdx_store_backup(cdx_store *s);
/* Whether DIR/clipdex.db fails PRAGMA quick_check (opened read-only on its
 * own; a store that cannot be opened because it is damaged is reported
 * here, not as an error).  why (cap bytes) receives SQLite's answer. */
cdx_status cdx_store_damaged(const char *dir, int *damaged, char *why, size_t cap);
/* Put DIR/clipdex.db.backup in place of the database, under the writer
 * lock (CDX_ERR_BUSY while clipdexd runs): the damaged database and its
 * WAL are kept as clipdex.db.damaged[-wal], the FAISS files (derived, and
 * ahead of the backup) are removed and rebuilt at the next open.  The
 * backup is checked first (CDX_ERR_FORMAT when it is damaged too;
 * CDX_ERR_IO when there is none).  *backup_time (optional): when the
 * backup was written (unix seconds).  The caller reconciles the rows with
 * the disk: files changed or gone since the backup. */
cdx_status cdx_store_restore_backup(const char *dir, int64_t *backup_time);

typedef void (*cdx_store_report_fn)(const char *line, void *user);
cdx_status cdx_store_check(cdx_store *s, int repair, cdx_store_report_fn fn, void *user,
                           int64_t *problems);

#ifdef __cplusplus
}
#endif
#endif /* CLIPDEX_H */
