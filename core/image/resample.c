/*
 * resample.c - BICUBIC image resize that gives the same bytes as Pillow.
 *
 * CLIP checkpoints were trained on images resized by Pillow, and
 * transformers' CLIPImageProcessor still resizes with
 * PIL.Image.resize(size, BICUBIC) (reducing_gap=None, so no reduce()
 * pre-pass).  Matching it exactly (not just closely) lets the tests compare
 * our tensors with the Python reference to ~1e-7 instead of to a fuzzy
 * tolerance.  The behaviour reproduced here, as observed in PIL 9.4:
 *
 *   - Separable: a horizontal pass, then a vertical pass over its output.
 *     Each pass rounds and clips to 8 bits, so the order matters.  A pass
 *     is skipped entirely when that dimension does not change.
 *   - Per output sample o of an axis (in -> out):
 *         scale       = in / out          (in goes through a float first:
 *                                          Pillow's box is float)
 *         filterscale = max(scale, 1)     (widen the kernel when shrinking)
 *         support     = 2 * filterscale
 *         center      = (o + 0.5) * scale
 *         taps        = [trunc(center - support + 0.5),
 *                        trunc(center + support + 0.5))  clipped to [0, in)
 *         w[i]        = cubic((i - center + 0.5) / filterscale), a = -0.5
 *     The weights are divided by their sum, then turned into fixed point
 *     with 22 fraction bits (32 - 8 - 2: 8 for the pixel, 2 headroom),
 *     rounding half away from zero.
 *   - Accumulation starts at 0.5 (1 << 21) and the result is
 *     clip(acc >> 22, 0, 255).
 *
 * All of this is double arithmetic whose every rounding must happen in the
 * same order as Pillow's, so the expressions below keep its evaluation
 * order; see the comments at each one.  A different order changes the last
 * bit of a weight now and then, which flips a pixel by one.
 *
 * Speed: coefficients are computed once per axis (not per row), the inner
 * loops are integer, and the vertical pass runs row-wise over a line of
 * accumulators so the compiler can vectorise it.  Only the requested
 * window is computed: CLIP preprocessing center-crops right after the
 * resize, so the cropped-away third of a landscape photo is never resized.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_impl.h"

#ifdef __FAST_MATH__
#error "resample.c needs IEEE double arithmetic in source order to match Pillow bit for bit"
#endif

#define PRECISION_BITS (32 - 8 - 2)
#define BICUBIC_SUPPORT 2.0
/* BILINEAR (SigLIP 2's processors): Pillow's triangle filter, support 1,
 * through the same code; everything else above holds for it as is. */
#define BILINEAR_SUPPORT 1.0

/* Coefficient tables may not exceed this many entries (256 MB).  Only a
 * pathological aspect ratio (say 200000000x1 squeezed to 224x224) comes
 * near it; real photos need a few hundred thousand. */
#define MAX_COEFFS ((size_t)1 << 26)

/* The cubic convolution kernel with a = -0.5 (Keys), written with the
 * same operation order as Pillow so results agree to the last bit. */
static double cubic(double x)
{
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

static double bilinear(double x)
{
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

/* Fixed-point filter of one axis, for the outputs o0 .. o0+n-1. */
typedef struct axis {
    int n;         /* number of outputs described */
    int ksize;     /* stride of k: the most taps any output can have */
    int *first;    /* [n] first input sample of each output */
    int *taps;     /* [n] number of input samples of each output */
    int32_t *k;    /* [n * ksize] weights, PRECISION_BITS fraction bits */
} axis;

static void axis_release(axis *ax)
{
    free(ax->first);
    free(ax->taps);
    free(ax->k);
    memset(ax, 0, sizeof *ax);
}

/* Compute the filter of outputs [o0, o0+n) of an in_size -> out_size
 * axis.  The arithmetic mirrors Pillow's step by step (see the top of the
 * file); the double temporaries are kept only for one output at a time. */
static cdx_status axis_init(axis *ax, int in_size, int out_size, int o0, int n, int filter)
{
    cdx_status st = CDX_OK;
    double *w = NULL;
    size_t nk;
    /* Pillow passes the box as float, so in_size is rounded to float
     * before the division (exact below 2^24, which real images are). */
    double scale = (double)(float)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    const int lin = filter == CDX_RESAMPLE_BILINEAR;
    double support = (lin ? BILINEAR_SUPPORT : BICUBIC_SUPPORT) * filterscale;
    double ss = 1.0 / filterscale; /* Pillow multiplies by the inverse */
    double ksize_d = ceil(support) * 2 + 1;

    memset(ax, 0, sizeof *ax);
    if (ksize_d > (double)MAX_COEFFS ||
        !cdx_mul_ok((size_t)ksize_d, (size_t)n, &nk) || nk > MAX_COEFFS) {
        return cdx_fail(CDX_ERR_LIMIT, "resize %d -> %d needs too many filter taps",
                        in_size, out_size);
    }
    ax->n = n;
    ax->ksize = (int)ksize_d;
    ax->first = malloc((size_t)n * sizeof *ax->first);
    ax->taps = malloc((size_t)n * sizeof *ax->taps);
    ax->k = malloc(nk * sizeof *ax->k);
    w = malloc((size_t)ax->ksize * sizeof *w);
    if (!ax->first || !ax->taps || !ax->k || !w) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory for resize coefficients");
        goto cleanup;
    }

    for (int i = 0; i < n; i++) {
        int o = o0 + i;
        double center = (o + 0.5) * scale;
        double ww = 0.0;
        /* (int) truncates toward zero like Pillow's casts; a negative lo
         * is clipped to 0 right after, so trunc vs floor never matters.
         * hi is clipped before the cast so that a huge in_size cannot
         * push the double past INT_MAX (same result where Pillow's cast
         * is defined). */
        double lo_d = center - support + 0.5, hi_d = center + support + 0.5;
        int lo = lo_d < 0.0 ? 0 : (int)lo_d;
        int hi = hi_d >= (double)in_size ? in_size : (int)hi_d;
        int32_t *k = ax->k + (size_t)i * (size_t)ax->ksize;
        int cnt;

        cnt = hi - lo;
        for (int t = 0; t < cnt; t++) {
            /* (t + lo) is an int converted to double, then
             * ((x - center) + 0.5) * ss, in this order. */
            double x = ((double)(t + lo) - center + 0.5) * ss;
            double v = lin ? bilinear(x) : cubic(x);
            w[t] = v;
            ww += v;
        }
        for (int t = 0; t < cnt; t++) {
            double v = ww != 0.0 ? w[t] / ww : w[t];
            /* Round half away from zero, as Pillow's normalisation does. */
            double f = v * (double)(1 << PRECISION_BITS);
            k[t] = (int32_t)(v < 0 ? -0.5 + f : 0.5 + f);
        }
        for (int t = cnt; t < ax->ksize; t++) k[t] = 0;
        ax->first[i] = lo;
        ax->taps[i] = cnt;
    }
cleanup:
    free(w);
    if (st != CDX_OK) axis_release(ax);
    return st;
}

/* acc holds PRECISION_BITS fraction bits.  Negative sums clip to 0 here
 * without a shift of a negative number (implementation-defined in C);
 * the result equals Pillow's table lookup on acc >> 22. */
static inline uint8_t clip8(int32_t acc)
{
    if (acc < 0) return 0;
    acc >>= PRECISION_BITS;
    return acc > 255 ? 255 : (uint8_t)acc;
}

/*
 * Overflow bound for the int32 accumulators (Pillow uses int too): the
 * normalised bicubic weights have a positive sum below 1.2, so
 * acc < 2^21 + 255 * 1.2 * 2^22 < 1.3e9 < 2^31, and the negative side is
 * smaller still.
 */

/* Horizontal pass over nrows rows.  in is (nrows, *, 3) with stride
 * in_stride bytes; out is (nrows, ax->n, 3), stride ax->n*3. */
static void pass_horizontal(const axis *ax, const uint8_t *in, size_t in_stride,
                            size_t nrows, uint8_t *out)
{
    const size_t out_stride = (size_t)ax->n * 3;
    for (size_t r = 0; r < nrows; r++) {
        const uint8_t *row = in + r * in_stride;
        uint8_t *o = out + r * out_stride;
        for (int j = 0; j < ax->n; j++) {
            const int32_t *k = ax->k + (size_t)j * (size_t)ax->ksize;
            const uint8_t *p = row + (size_t)ax->first[j] * 3;
            int32_t a0 = 1 << (PRECISION_BITS - 1), a1 = a0, a2 = a0;
            for (int t = 0; t < ax->taps[j]; t++, p += 3) {
                a0 += p[0] * k[t];
                a1 += p[1] * k[t];
                a2 += p[2] * k[t];
            }
            o[j * 3 + 0] = clip8(a0);
            o[j * 3 + 1] = clip8(a1);
            o[j * 3 + 2] = clip8(a2);
        }
    }
}

/* Vertical pass.  in holds source rows row0, row0+1, ... with stride
 * in_stride; each row contributes width bytes (all channels interleaved,
 * which is fine: the vertical filter treats every byte alike).  out is
 * (ax->n, width), stride width.  acc is scratch of width int32s.  The
 * loop runs along the row so the inner loop is a vectorisable
 * multiply-add over contiguous bytes. */
static void pass_vertical(const axis *ax, const uint8_t *in, size_t in_stride, int row0,
                          size_t width, int32_t *acc, uint8_t *out)
{
    for (int i = 0; i < ax->n; i++) {
        const int32_t *k = ax->k + (size_t)i * (size_t)ax->ksize;
        const uint8_t *base = in + (size_t)(ax->first[i] - row0) * in_stride;
        uint8_t *o = out + (size_t)i * width;
        for (size_t x = 0; x < width; x++) acc[x] = 1 << (PRECISION_BITS - 1);
        for (int t = 0; t < ax->taps[i]; t++) {
            const uint8_t *row = base + (size_t)t * in_stride;
            const int32_t kt = k[t];
            for (size_t x = 0; x < width; x++) acc[x] += row[x] * kt;
        }
        for (size_t x = 0; x < width; x++) o[x] = clip8(acc[x]);
    }
}

static cdx_status check_args(uint32_t sw, uint32_t sh, uint32_t dw, uint32_t dh)
{
    if (sw == 0 || sh == 0 || dw == 0 || dh == 0)
        return cdx_fail(CDX_ERR_ARG, "resize: empty image (%ux%u -> %ux%u)", sw, sh, dw, dh);
    /* Pillow's sizes are int; so are ours inside the filter code. */
    if (sw > INT32_MAX || sh > INT32_MAX || dw > INT32_MAX || dh > INT32_MAX)
        return cdx_fail(CDX_ERR_LIMIT, "resize: size too large (%ux%u -> %ux%u)", sw, sh, dw, dh);
    return CDX_OK;
}

cdx_status cdx_resample_bicubic(const uint8_t *src, uint32_t sw, uint32_t sh,
                                uint32_t dw, uint32_t dh,
                                uint32_t x0, uint32_t y0, uint32_t ow, uint32_t oh,
                                uint8_t *dst)
{
    return cdx_resample(src, sw, sh, dw, dh, x0, y0, ow, oh, CDX_RESAMPLE_BICUBIC, dst);
}

cdx_status cdx_resample(const uint8_t *src, uint32_t sw, uint32_t sh, uint32_t dw, uint32_t dh,
                        uint32_t x0, uint32_t y0, uint32_t ow, uint32_t oh, int filter,
                        uint8_t *dst)
{
    cdx_status st;
    axis ax = {0}, ay = {0};
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    const size_t src_stride = (size_t)sw * 3, win_stride = (size_t)ow * 3;
    const int need_h = dw != sw, need_v = dh != sh;
    int row0, row1;               /* source rows the vertical pass reads */
    const uint8_t *vin;           /* input of the vertical pass ... */
    size_t vin_stride;            /* ... and its stride */
    size_t tmp_bytes;

    if ((st = check_args(sw, sh, dw, dh))) return st;
    if (ow == 0 || oh == 0 || x0 > dw || y0 > dh || ow > dw - x0 || oh > dh - y0)
        return cdx_fail(CDX_ERR_ARG, "resize: window %ux%u+%u+%u outside %ux%u",
                        ow, oh, x0, y0, dw, dh);

    if (need_v) {
        if ((st = axis_init(&ay, (int)sh, (int)dh, (int)y0, (int)oh, filter))) goto cleanup;
        /* first[] and first+taps are non-decreasing in the output index,
         * so the first and last outputs bound the rows needed. */
        row0 = ay.first[0];
        row1 = ay.first[oh - 1] + ay.taps[oh - 1];
    } else {
        row0 = (int)y0;
        row1 = (int)(y0 + oh);
    }

    if (need_h) {
        if ((st = axis_init(&ax, (int)sw, (int)dw, (int)x0, (int)ow, filter))) goto cleanup;
        if (!cdx_mul_ok((size_t)(row1 - row0), win_stride, &tmp_bytes) ||
            !(tmp = malloc(tmp_bytes))) {
            st = cdx_fail(CDX_ERR_NOMEM, "resize: out of memory");
            goto cleanup;
        }
        pass_horizontal(&ax, src + (size_t)row0 * src_stride, src_stride,
                        (size_t)(row1 - row0), tmp);
        vin = tmp;
        vin_stride = win_stride;
    } else {
        /* No horizontal pass: read the window's columns straight from src. */
        vin = src + (size_t)row0 * src_stride + (size_t)x0 * 3;
        vin_stride = src_stride;
    }

    if (need_v) {
        if (!(acc = malloc(win_stride * sizeof *acc))) {
            st = cdx_fail(CDX_ERR_NOMEM, "resize: out of memory");
            goto cleanup;
        }
        pass_vertical(&ay, vin, vin_stride, row0, win_stride, acc, dst);
    } else {
        for (uint32_t r = 0; r < oh; r++)
            memcpy(dst + r * win_stride, vin + r * vin_stride, win_stride);
    }
cleanup:
    axis_release(&ax);
    axis_release(&ay);
    free(tmp);
    free(acc);
    return st;
}

/* Reference twin: the whole image, Pillow's structure, one output byte at
 * a time with the tap loop innermost.  Deliberately plain. */
cdx_status cdx_resample_bicubic_ref(const uint8_t *src, uint32_t sw, uint32_t sh,
                                    uint32_t dw, uint32_t dh, uint8_t *dst)
{
    cdx_status st;
    axis ax = {0}, ay = {0};
    uint8_t *tmp = NULL;
    const uint8_t *img = src;
    uint32_t w = sw, h = sh, y_first = 0;

    if ((st = check_args(sw, sh, dw, dh))) return st;
    if ((st = axis_init(&ay, (int)sh, (int)dh, 0, (int)dh, CDX_RESAMPLE_BICUBIC))) goto cleanup;
    if (dw != sw) {
        uint32_t y_last = (uint32_t)(ay.first[dh - 1] + ay.taps[dh - 1]);
        y_first = (uint32_t)ay.first[0];
        if ((st = axis_init(&ax, (int)sw, (int)dw, 0, (int)dw, CDX_RESAMPLE_BICUBIC))) goto cleanup;
        if (!(tmp = malloc((size_t)(y_last - y_first) * dw * 3))) {
            st = cdx_fail(CDX_ERR_NOMEM, "resize: out of memory");
            goto cleanup;
        }
        for (uint32_t y = y_first; y < y_last; y++)
            for (uint32_t x = 0; x < dw; x++)
                for (int c = 0; c < 3; c++) {
                    int32_t a = 1 << (PRECISION_BITS - 1);
                    for (int t = 0; t < ax.taps[x]; t++)
                        a += src[((size_t)y * sw + (size_t)(ax.first[x] + t)) * 3 + c] *
                             ax.k[(size_t)x * (size_t)ax.ksize + (size_t)t];
                    tmp[((size_t)(y - y_first) * dw + x) * 3 + c] = clip8(a);
                }
        img = tmp;
        w = dw;
        h = y_last - y_first;
    }
    if (dh != sh) {
        for (uint32_t y = 0; y < dh; y++)
            for (uint32_t x = 0; x < w; x++)
                for (int c = 0; c < 3; c++) {
                    int32_t a = 1 << (PRECISION_BITS - 1);
                    for (int t = 0; t < ay.taps[y]; t++)
                        a += img[((size_t)(ay.first[y] + t - (int)y_first) * w + x) * 3 + c] *
                             ay.k[(size_t)y * (size_t)ay.ksize + (size_t)t];
                    dst[((size_t)y * w + x) * 3 + c] = clip8(a);
                }
    } else {
        /* No vertical pass.  With an unchanged height the vertical filter
         * is the identity and its first tap row is 0, so img holds rows
         * 0 .. dh-1 (the horizontal pass, if any, covered all of them). */
        if (y_first != 0 || h < dh) {
            st = CDX_BUG("vertical identity does not start at row 0");
            goto cleanup;
        }
        memcpy(dst, img, (size_t)dh * w * 3);
    }
cleanup:
    axis_release(&ax);
    axis_release(&ay);
    free(tmp);
    return st;
}
