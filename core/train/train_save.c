/*
 * train_save.c - writing what training produced: the model directory
 * (cdx_train_save) and the gradients for the tests (cdx_train_save_grads).
 *
 * Both write safetensors: an 8-byte little-endian header length, a JSON
 * header {"NAME": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]},
 * "__metadata__": {"format": "pt"}} padded with spaces to a multiple of
 * 8 bytes, then the tensors' bytes in header order.  transformers reads
 * the "pt" format marker; clipdex's reader ignores the metadata.
 *
 * The directory is built as DIR.tmp-PID beside the target, every file
 * fsynced, then moved into place with one rename (or an atomic swap with
 * renameat2 when the target exists, whose old contents are then removed):
 * a crash leaves either the old model or the new one, never a mixture.
 *
 * The training state, when asked for, goes into the same directory (so
 * the one rename publishes weights and state together):
 *   train_state.safetensors  NAME.exp_avg and NAME.exp_avg_sq of every
 *                            trainable tensor (AdamW's moments, F32)
 *   train_state.json         {"step": steps done, "settings": the caller's}
 * Neither is a weights file for the loaders, and is_weights_file keeps
 * train_state.safetensors out of a later run's copy.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <openssl/evp.h>

#include "internal.h"
#include "train_impl.h"

/* Append to a growable string; 0 on out of memory. */
static int sb_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int sb_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(*buf ? *buf + *len : NULL, *buf ? *cap - *len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return 0;
        if (*buf && *len + (size_t)n < *cap) {
            *len += (size_t)n;
            return 1;
        }
        size_t ncap = (*cap ? *cap * 2 : 4096) + (size_t)n;
        char *nb = realloc(*buf, ncap);
        if (!nb) return 0;
        *buf = nb;
        *cap = ncap;
    }
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return 0;
        }
        c += w;
        n -= (size_t)w;
    }
    return 1;
}

static cdx_status data_sha256(const struct st_entry *e, int n, char out[2 * CDX_HASH_SIZE + 1])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint8_t h[CDX_HASH_SIZE];
    unsigned hl = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    for (int i = 0; ok && i < n; i++) ok = EVP_DigestUpdate(ctx, e[i].data, (size_t)e[i].numel * 4) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, h, &hl) == 1 && hl == CDX_HASH_SIZE;
    EVP_MD_CTX_free(ctx);
    if (!ok) return cdx_fail(CDX_ERR_IO, "hashing the weights failed");
    cdx_hash_hex(h, out);
    return CDX_OK;
}

static cdx_status write_safetensors(const char *path, const struct st_entry *e, int n)
{
    char *hdr = NULL;
    size_t len = 0, cap = 0;
    uint64_t off = 0;
    int fd = -1;
    cdx_status st = CDX_OK;

    /* The SHA-256 of the tensor bytes, in the header: a store knows a model
     * by its config and the first MiB of its weights file (cdx_store_model_key),
     * and a trained model can differ from its input only further on (say
     * --lock text with the temperature clamped where it was) */
    char sum[2 * CDX_HASH_SIZE + 1];
    if ((st = data_sha256(e, n, sum))) return st;
    if (!sb_add(&hdr, &len, &cap, "{\"__metadata__\":{\"format\":\"pt\",\"clipdex_sha256\":\"%s\"}", sum))
        goto nomem;
    for (int i = 0; i < n; i++) {
        if (!sb_add(&hdr, &len, &cap, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", e[i].name)) goto nomem;
        for (int d = 0; d < e[i].ndim; d++)
            if (!sb_add(&hdr, &len, &cap, "%s%lld", d ? "," : "", (long long)e[i].shape[d])) goto nomem;
        uint64_t end = off + (uint64_t)e[i].numel * 4;
        if (!sb_add(&hdr, &len, &cap, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                    (unsigned long long)end))
            goto nomem;
        off = end;
    }
    if (!sb_add(&hdr, &len, &cap, "}")) goto nomem;
    while (len % 8)
        if (!sb_add(&hdr, &len, &cap, " ")) goto nomem;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)len >> (8 * i));
    int ok = write_all(fd, lenb, 8) && write_all(fd, hdr, len);
    /* float32 little-endian: the host's layout on every machine we build for */
    for (int i = 0; ok && i < n; i++) ok = write_all(fd, e[i].data, (size_t)e[i].numel * 4);
    if (!ok || fsync(fd) != 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        st = cdx_fail(CDX_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    fd = -1;
    goto out;
nomem:
    st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
out:
    if (fd >= 0) close(fd);
    free(hdr);
    return st;
}

cdx_status cdx_train_save_grads(cdx_train_model *m, const char *path)
{
    struct st_entry *e = calloc((size_t)m->n_params, sizeof *e);
    int n = 0;
    if (!e) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->n_params; i++) {
        const cdx_train_param *p = &m->params[i];
        if (!p->trainable) continue;
        e[n].name = p->name;
        e[n].ndim = p->ndim;
        memcpy(e[n].shape, p->shape, sizeof p->shape);
        e[n].numel = p->numel;
        e[n].data = p->g;
        n++;
    }
    cdx_status st = write_safetensors(path, e, n);
    free(e);
    return st;
}

/* Weight files are not copied: the new model.safetensors replaces them. */
static int is_weights_file(const char *name)
{
    static const char *const ends[] = {".safetensors", ".safetensors.index.json", ".bin",
                                       ".bin.index.json", ".h5", ".msgpack", ".onnx", ".pt",
                                       ".pth", ".ot"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        size_t k = strlen(ends[i]);
        if (n >= k && strcmp(name + n - k, ends[i]) == 0) return 1;
    }
    return 0;
}

static cdx_status copy_file(const char *src, const char *dst)
{
    int in = -1, out = -1;
    cdx_status st = CDX_OK;
    char buf[65536];
    if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", src, strerror(errno));
        goto done;
    }
    if ((out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", dst, strerror(errno));
        goto done;
    }
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = cdx_fail(CDX_ERR_IO, "%s: %s", src, strerror(errno));
            goto done;
        }
        if (r == 0) break;
        if (!write_all(out, buf, (size_t)r)) {
            st = cdx_fail(CDX_ERR_IO, "%s: %s", dst, strerror(errno));
            goto done;
        }
    }
    if (fsync(out) != 0) st = cdx_fail(CDX_ERR_IO, "%s: %s", dst, strerror(errno));
done:
    if (in >= 0) close(in);
    if (out >= 0 && close(out) != 0 && st == CDX_OK)
        st = cdx_fail(CDX_ERR_IO, "%s: %s", dst, strerror(errno));
    return st;
}

/* Remove a directory of regular files (the temporary or replaced model). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (d) {
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char *p = cdx_path_join(dir, de->d_name);
            if (p) unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return 0;
    int ok = fsync(fd) == 0;
    close(fd);
    return ok;
}

/* The directory that holds path (heap string). */
static char *parent_of(const char *path)
{
    char *p = strdup(path);
    if (!p) return NULL;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') p[--n] = 0;
    char *s = strrchr(p, '/');
    if (!s) {
        free(p);
        return strdup(".");
    }
    if (s == p) s[1] = 0;
    else *s = 0;
    return p;
}

/* The state files into dir. */
static cdx_status write_state(cdx_train_model *m, const char *dir, const char *settings)
{
    struct st_entry *e = calloc(2 * (size_t)m->n_params, sizeof *e);
    char (*names)[160] = calloc(2 * (size_t)m->n_params, sizeof *names);
    float *zeros = NULL;
    char *path = NULL, *json = NULL;
    cJSON *root = NULL, *set = NULL;
    int64_t big = 1;
    int n = 0, fd = -1;
    cdx_status st = CDX_OK;
    if (!e || !names) goto nomem;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].numel > big) big = m->params[i].numel;
    if (!(zeros = calloc((size_t)big, sizeof(float)))) goto nomem;
    for (int i = 0; i < m->n_params; i++) {
        const cdx_train_param *p = &m->params[i];
        if (!p->trainable) continue;
        for (int k = 0; k < 2; k++) {
            snprintf(names[n], sizeof names[n], "%s.%s", p->name, k ? "exp_avg_sq" : "exp_avg");
            e[n].name = names[n];
            e[n].ndim = p->ndim;
            memcpy(e[n].shape, p->shape, sizeof p->shape);
            e[n].numel = p->numel;
            e[n].data = (k ? p->v : p->m) ? (k ? p->v : p->m) : zeros;
            n++;
        }
    }
    if (!(path = cdx_path_join(dir, "train_state.safetensors"))) goto nomem;
    if ((st = write_safetensors(path, e, n))) goto out;
    free(path);
    if (!(path = cdx_path_join(dir, "train_state.json"))) goto nomem;
    if (!(root = cJSON_CreateObject()) || !cJSON_AddNumberToObject(root, "step", (double)m->steps)) goto nomem;
    if (settings) {
        if (!(set = cJSON_Parse(settings))) {
            st = cdx_fail(CDX_ERR_ARG, "cdx_train_save: the settings are not JSON");
            goto out;
        }
        cJSON_AddItemToObject(root, "settings", set);
    }
    if (!(json = cJSON_Print(root))) goto nomem;
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || !write_all(fd, json, strlen(json)) || !write_all(fd, "\n", 1) || fsync(fd) != 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    goto out;
nomem:
    st = cdx_fail(CDX_ERR_NOMEM, "out of memory writing the training state");
out:
    if (fd >= 0) close(fd);
    cJSON_Delete(root);
    free(json);
    free(path);
    free(zeros);
    free(names);
    free(e);
    return st;
}

cdx_status cdx_train_load_state(cdx_train_model *m, const char *dir, char **settings)
{
    char *path = NULL, *text = NULL, *hdr = NULL, name[160];
    size_t len = 0;
    cJSON *root = NULL, *h = NULL;
    FILE *f = NULL;
    cdx_status st = CDX_OK;
    if (!m || !dir || !settings) return cdx_fail(CDX_ERR_ARG, "cdx_train_load_state: NULL argument");
    *settings = NULL;
    if (!(path = cdx_path_join(dir, "train_state.json"))) goto nomem;
    if ((st = cdx_read_file(path, 1 << 20, &text, &len))) goto out;
    root = cJSON_Parse(text);
    const cJSON *step = root ? cJSON_GetObjectItemCaseSensitive(root, "step") : NULL;
    if (!cJSON_IsNumber(step) || step->valuedouble < 0 || step->valuedouble != floor(step->valuedouble)) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: no step count", path);
        goto out;
    }
    const cJSON *set = cJSON_GetObjectItemCaseSensitive(root, "settings");
    if (set && !(*settings = cJSON_PrintUnformatted(set))) goto nomem;

    /* the moments: our own file, read back by its header */
    free(path);
    if (!(path = cdx_path_join(dir, "train_state.safetensors"))) goto nomem;
    if (!(f = fopen(path, "rb"))) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    uint8_t lb[8];
    uint64_t hl = 0;
    if (fread(lb, 1, 8, f) != 8) goto bad;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)lb[i] << (8 * i);
    if (hl > (1u << 26) || !(hdr = malloc(hl + 1)) || fread(hdr, 1, hl, f) != hl) goto bad;
    hdr[hl] = 0;
    if (!(h = cJSON_Parse(hdr))) goto bad;
    const long base = 8 + (long)hl;
    for (int i = 0; i < m->n_params; i++) {
        cdx_train_param *p = &m->params[i];
        if (!p->trainable) continue;
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof name, "%s.%s", p->name, k ? "exp_avg_sq" : "exp_avg");
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(h, name);
            const cJSON *off = t ? cJSON_GetObjectItemCaseSensitive(t, "data_offsets") : NULL;
            if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
                cJSON_GetArrayItem(off, 1)->valuedouble - cJSON_GetArrayItem(off, 0)->valuedouble !=
                    (double)p->numel * 4) {
                st = cdx_fail(CDX_ERR_FORMAT, "%s: no moments for %s of this model and lock",
                              path, p->name);
                goto out;
            }
            float **dst = k ? &p->v : &p->m;
            if (!*dst && !(*dst = malloc(sizeof(float) * (size_t)p->numel))) goto nomem;
            if (fseek(f, base + (long)cJSON_GetArrayItem(off, 0)->valuedouble, SEEK_SET) != 0 ||
                fread(*dst, 4, (size_t)p->numel, f) != (size_t)p->numel)
                goto bad;
        }
    }
    m->steps = (int64_t)step->valuedouble;
    goto out;
bad:
    st = cdx_fail(CDX_ERR_FORMAT, "%s: truncated or corrupt", path);
    goto out;
nomem:
    st = cdx_fail(CDX_ERR_NOMEM, "out of memory reading the training state");
out:
    if (f) fclose(f);
    if (st) {
        free(*settings);
        *settings = NULL;
    }
    cJSON_Delete(root);
    cJSON_Delete(h);
    free(hdr);
    free(text);
    free(path);
    return st;
}

cdx_status cdx_train_save(cdx_train_model *m, const char *out_dir, const char *state)
{
    char *tmp = NULL, *src = NULL, *dst = NULL, *parent = NULL, *cfg = NULL;
    struct st_entry *e = NULL;
    DIR *d = NULL;
    struct dirent *de;
    struct stat sb;
    cdx_status st = CDX_OK;
    int made = 0, n = 0;

    if (!m || !out_dir || !*out_dir) return cdx_fail(CDX_ERR_ARG, "cdx_train_save: invalid argument");
    cdx_train_test_stop("start");
    if (stat(out_dir, &sb) == 0) {
        /* replace only a model directory: never a directory of other things */
        if (!S_ISDIR(sb.st_mode)) return cdx_fail(CDX_ERR_IO, "%s: exists and is not a directory", out_dir);
        if (!(cfg = cdx_path_join(out_dir, m->oc ? "open_clip_config.json" : "config.json"))) goto nomem;
        DIR *od = opendir(out_dir);
        int empty = 1;
        if (od) {
            while ((de = readdir(od)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) empty = 0;
            closedir(od);
        }
        if (!empty && access(cfg, F_OK) != 0) {
            st = cdx_fail(CDX_ERR_IO, "%s: exists and is not a model directory (no config.json): "
                          "not replacing it", out_dir);
            goto out;
        }
    }
    size_t tl = strlen(out_dir) + 32;
    if (!(tmp = malloc(tl))) goto nomem;
    snprintf(tmp, tl, "%s.tmp-%ld", out_dir, (long)getpid());
    remove_dir(tmp); /* left by a crashed run of this pid: ours to reuse */
    if (mkdir(tmp, 0755) != 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    made = 1;

    /* config, tokenizer, processor: every regular file but the weights */
    if (!(d = opendir(m->dir))) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", m->dir, strerror(errno));
        goto out;
    }
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || is_weights_file(de->d_name) ||
            !strcmp(de->d_name, "train_state.json"))
            continue;
        free(src);
        free(dst);
        src = cdx_path_join(m->dir, de->d_name);
        dst = cdx_path_join(tmp, de->d_name);
        if (!src || !dst) goto nomem;
        if (stat(src, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if ((st = copy_file(src, dst))) goto out;
    }

    /* every float tensor of the source, under its name, in its order */
    int nt = cdx_weights_count(m->w);
    if (!(e = calloc((size_t)nt, sizeof *e))) goto nomem;
    for (int i = 0; i < nt; i++) {
        const cdx_tensor_info *ti = cdx_weights_at(m->w, i);
        const cdx_train_param *p = cdx_train_param_find(m, ti->name);
        e[n].name = ti->name;
        e[n].ndim = ti->ndim;
        memcpy(e[n].shape, ti->shape, sizeof ti->shape);
        e[n].numel = ti->numel;
        if (p) {
            e[n].data = p->w;
        } else if (m->oc && (e[n].data = cdx_train_openclip_export(m, ti, &st))) {
            /* fused or transposed back (train_openclip.c) */
        } else if (st) {
            goto out;
        } else if ((st = cdx_weights_f32(m->w, ti->name, ti->ndim, ti->shape, &e[n].data))) {
            goto out;
        }
        n++;
    }
    free(dst);
    if (!(dst = cdx_path_join(tmp, m->oc ? "open_clip_model.safetensors" : "model.safetensors"))) goto nomem;
    if (cdx_train_openclip_is_bin(m)) {
        /* the input's format: open_clip_pytorch_model.bin (train_openclip.c) */
        if ((st = cdx_train_openclip_write_bin(m, tmp))) goto out;
    } else if ((st = write_safetensors(dst, e, n))) {
        goto out;
    }
    if (state && (st = write_state(m, tmp, state))) goto out;
    if (!fsync_dir(tmp)) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto out;
    }

    cdx_train_test_stop("before");
    if (rename(tmp, out_dir) != 0) {
        if (errno != ENOTEMPTY && errno != EEXIST) {
            st = cdx_fail(CDX_ERR_IO, "%s: %s", out_dir, strerror(errno));
            goto out;
        }
        /* swap the new directory in; tmp then holds the old model */
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out_dir, RENAME_EXCHANGE) != 0) {
            st = cdx_fail(CDX_ERR_IO, "%s: %s", out_dir, strerror(errno));
            goto out;
        }
        cdx_train_test_stop("swapped");
    } else {
        made = 0;
    }
    if (!(parent = parent_of(out_dir))) goto nomem;
    fsync_dir(parent);
    goto out;
nomem:
    st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", out_dir);
out:
    if (d) closedir(d);
    if (made) remove_dir(tmp);
    cdx_train_openclip_release(m);
    free(tmp);
    free(src);
    free(dst);
    free(parent);
    free(cfg);
    free(e);
    return st;
}

/* For train_init.c: the same writer and copier. */
cdx_status cdx_train_write_tensors(const char *path, const struct st_entry *e, int n)
{
    return write_safetensors(path, e, n);
}

cdx_status cdx_train_copy_file(const char *src, const char *dst) { return copy_file(src, dst); }

int cdx_train_is_weights_file(const char *name) { return is_weights_file(name); }

void cdx_train_remove_dir(const char *dir) { remove_dir(dir); }
