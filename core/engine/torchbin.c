/*
 * torchbin.c - pytorch_model.bin as written by torch.save (zip format).
 *
 * The archive holds PREFIX/data.pkl (a pickle of the state dict) and one
 * entry PREFIX/data/KEY per storage.  A pickle is a program for a stack
 * machine that may import and call anything, so it is never handed to a
 * general unpickler: the interpreter below knows only the opcodes
 * torch.save emits for a state dict, and its only "imports" are an
 * allow-list of names it treats as tags:
 *
 *   collections.OrderedDict          -> an empty dict (REDUCE with ())
 *   torch._utils._rebuild_tensor_v2  -> a tensor record (REDUCE)
 *   torch.<Dtype>Storage             -> a storage dtype tag (persistent id)
 *
 * Nothing is ever executed; every other global, unknown opcode, stack
 * underflow, bad memo reference or excessive nesting is refused with
 * CDX_ERR_FORMAT.  What torch.save writes for one tensor looks like
 *
 *   GLOBAL torch._utils _rebuild_tensor_v2
 *   MARK  MARK 'storage' GLOBAL torch FloatStorage '0' 'cpu' 6 TUPLE
 *         BINPERSID  offset (sizes) (strides) False  OrderedDict() TUPLE
 *   REDUCE
 *
 * i.e. _rebuild_tensor_v2(storage, storage_offset, size, stride,
 * requires_grad, backward_hooks[, metadata]), where storage is the
 * persistent id ('storage', type, key, location, numel) whose bytes are
 * PREFIX/data/KEY.  Offsets and numel count elements, not bytes.
 *
 * PyTorch before 1.6 (and torch.save(..., _use_new_zipfile_serialization=
 * False) since) wrote the legacy format instead, which older Hub uploads
 * use: five pickles back to back -- a magic number, the protocol version
 * (1001), system info (byte order, type sizes), the state dict (the same
 * opcodes, its persistent ids carrying a sixth item, view metadata, None)
 * and the list of storage keys -- then, for each key in that order, the
 * storage's element count (8 bytes, little-endian) and its raw bytes.  The
 * same interpreter reads those pickles; the file is mapped, and tensors
 * point into the mapping as safetensors ones do.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zip.h>

#include "weights_impl.h"

/* A state dict's pickle is ~100 bytes per tensor; 64 MB is far beyond
 * any real checkpoint and bounds what a hostile one can make us hold. */
#define TB_PKL_MAX ((zip_uint64_t)64 << 20)
/* Bounds on the interpreter's state (torch nests marks 2 deep). */
#define TB_STACK_MAX ((size_t)1 << 20)
#define TB_MARKS_MAX 64
#define TB_OBJS_MAX ((size_t)1 << 21)
#define TB_DIMS_MAX 64
#define TB_NAME_MAX 128 /* GLOBAL module/name lines */

/* ------------------------------------------------------------------ */
/* objects                                                             */
/* ------------------------------------------------------------------ */

typedef enum pk_kind {
    PK_NONE,
    PK_BOOL,
    PK_INT,
    PK_STR,
    PK_TUPLE,
    PK_LIST,
    PK_DICT,    /* items hold key, value, key, value ... */
    PK_GLOBAL,  /* one of the allowed names: see pk_global */
    PK_STORAGE, /* a persistent id; args is the validated 5-tuple */
    PK_TENSOR   /* _rebuild_tensor_v2(...); args is the validated tuple */
} pk_kind;

typedef enum pk_global { G_ORDEREDDICT, G_REBUILD_TENSOR_V2, G_STORAGE } pk_global;

typedef struct pk_obj pk_obj;
struct pk_obj {
    pk_kind kind;
    pk_global global;      /* PK_GLOBAL */
    const char *dtype;     /* PK_GLOBAL G_STORAGE: safetensors dtype name */
    int64_t i;             /* PK_INT, PK_BOOL */
    char *s;               /* PK_STR: NUL-terminated copy */
    size_t slen;
    pk_obj **items;        /* PK_TUPLE, PK_LIST, PK_DICT: owned array */
    size_t n, cap;
    const pk_obj *args;    /* PK_STORAGE, PK_TENSOR: a PK_TUPLE */
};

/* torch's typed storage classes, by the safetensors dtype they hold.
 * Non-float ones are accepted (int64 position_ids exist in real CLIP
 * checkpoints) and refused only if such a tensor is requested. */
static const struct {
    const char *cls, *dtype;
} storage_types[] = {
    {"FloatStorage", "F32"},        {"HalfStorage", "F16"},
    {"BFloat16Storage", "BF16"},    {"DoubleStorage", "F64"},
    {"LongStorage", "I64"},         {"IntStorage", "I32"},
    {"ShortStorage", "I16"},        {"CharStorage", "I8"},
    {"ByteStorage", "U8"},          {"BoolStorage", "BOOL"},
    {"ComplexFloatStorage", "C64"}, {"ComplexDoubleStorage", "C128"},
};

/* The interpreter.  Every object lives in `all` and is freed at the end,
 * so objects can be shared (memo, nested references) without reference
 * counting and cycles cost nothing. */
typedef struct pk {
    const char *file;       /* for messages */
    const uint8_t *p;       /* the pickle */
    size_t len, pos, op_pos;
    pk_obj **stack;
    size_t sp, stack_cap;
    size_t marks[TB_MARKS_MAX]; /* stack heights at each MARK */
    int n_marks;
    pk_obj **memo;
    size_t memo_cap, memo_count;
    pk_obj **all;
    size_t n_all, all_cap;
    cdx_status new_st;      /* why the last pk_new returned NULL */
    bool legacy;            /* legacy format: 6-item persistent ids */
} pk;

/* Refuse: one line naming the file, what was wrong and where. */
static cdx_status pk_err(pk *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static cdx_status pk_err(pk *u, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return cdx_fail(CDX_ERR_FORMAT, "%s: data.pkl: %s (at byte %zu)", u->file, what, u->op_pos);
}

static cdx_status pk_nomem(pk *u)
{
    return cdx_fail(CDX_ERR_NOMEM, "%s: data.pkl: out of memory", u->file);
}

static pk_obj *pk_new(pk *u, pk_kind kind)
{
    pk_obj *o;
    if (u->n_all == TB_OBJS_MAX) {
        u->new_st = pk_err(u, "more than %zu objects", TB_OBJS_MAX);
        return NULL;
    }
    pk_obj **a = cdx_grow(u->all, &u->all_cap, u->n_all + 1, sizeof *a, 256);
    if (!a) {
        u->new_st = pk_nomem(u);
        return NULL;
    }
    u->all = a;
    if (!(o = calloc(1, sizeof *o))) {
        u->new_st = pk_nomem(u);
        return NULL;
    }
    o->kind = kind;
    u->all[u->n_all++] = o;
    return o;
}

static void pk_release(pk *u)
{
    for (size_t i = 0; i < u->n_all; i++) {
        free(u->all[i]->items);
        free(u->all[i]->s);
        free(u->all[i]);
    }
    free(u->all);
    free(u->stack);
    free(u->memo);
}

static cdx_status pk_append(pk *u, pk_obj *c, pk_obj *item)
{
    pk_obj **a = cdx_grow(c->items, &c->cap, c->n + 1, sizeof *a, 4);
    if (!a) return pk_nomem(u);
    c->items = a;
    c->items[c->n++] = item;
    return CDX_OK;
}

/* ------------------------------------------------------------------ */
/* the stack                                                           */
/* ------------------------------------------------------------------ */

/* After MARK, pickle code sees only what was pushed since (Python keeps a
 * separate stack per mark); reaching below is an underflow. */
static size_t pk_floor(const pk *u) { return u->n_marks ? u->marks[u->n_marks - 1] : 0; }

static cdx_status pk_push(pk *u, pk_obj *o)
{
    if (!o) return u->new_st; /* pk_new failed and set the message */
    if (u->sp == u->stack_cap) {
        pk_obj **s;
        if (u->stack_cap >= TB_STACK_MAX) return pk_err(u, "stack deeper than %zu", TB_STACK_MAX);
        if (!(s = cdx_grow(u->stack, &u->stack_cap, u->sp + 1, sizeof *s, 64))) return pk_nomem(u);
        u->stack = s;
    }
    u->stack[u->sp++] = o;
    return CDX_OK;
}

static pk_obj *pk_pop(pk *u)
{
    if (u->sp <= pk_floor(u)) return NULL;
    return u->stack[--u->sp];
}

static pk_obj *pk_top(pk *u)
{
    if (u->sp <= pk_floor(u)) return NULL;
    return u->stack[u->sp - 1];
}

/* Pop everything down to the last MARK into a new container of kind. */
static cdx_status pk_pop_mark(pk *u, size_t *from)
{
    if (u->n_marks == 0) return pk_err(u, "no MARK to pop to");
    *from = u->marks[--u->n_marks];
    return CDX_OK;
}

/* ------------------------------------------------------------------ */
/* reading the opcode stream                                           */
/* ------------------------------------------------------------------ */

static cdx_status pk_bytes(pk *u, size_t n, const uint8_t **out)
{
    if (n > u->len - u->pos) return pk_err(u, "truncated");
    *out = u->p + u->pos;
    u->pos += n;
    return CDX_OK;
}

static cdx_status pk_uint(pk *u, size_t n, uint64_t *out)
{
    const uint8_t *b = NULL;
    cdx_status st = pk_bytes(u, n, &b);
    uint64_t v = 0;
    if (st != CDX_OK) return st;
    for (size_t i = n; i-- > 0;) v = (v << 8) | b[i];
    *out = v;
    return CDX_OK;
}

/* A GLOBAL operand: text up to '\n', bounded. */
static cdx_status pk_line(pk *u, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        if (u->pos >= u->len) return pk_err(u, "truncated GLOBAL");
        char c = (char)u->p[u->pos++];
        if (c == '\n') break;
        if (n + 1 >= cap) return pk_err(u, "GLOBAL name longer than %zu bytes", cap - 1);
        buf[n++] = c;
    }
    buf[n] = '\0';
    return CDX_OK;
}

static cdx_status pk_str(pk *u, size_t n)
{
    const uint8_t *b = NULL;
    pk_obj *o;
    cdx_status st = pk_bytes(u, n, &b);
    if (st != CDX_OK) return st;
    if (!(o = pk_new(u, PK_STR))) return u->new_st;
    if (!(o->s = malloc(n + 1))) return pk_nomem(u);
    memcpy(o->s, b, n);
    o->s[n] = '\0';
    o->slen = n;
    return pk_push(u, o);
}

static cdx_status pk_int(pk *u, int64_t v)
{
    pk_obj *o = pk_new(u, PK_INT);
    if (o) o->i = v;
    return pk_push(u, o);
}

/* The allow-list.  Anything else is refused here, before it could be
 * called, and the message says exactly what was asked for. */
static cdx_status pk_global_op(pk *u, const char *module, const char *name)
{
    pk_obj *o;
    if (strcmp(module, "collections") == 0 && strcmp(name, "OrderedDict") == 0) {
        if (!(o = pk_new(u, PK_GLOBAL))) return u->new_st;
        o->global = G_ORDEREDDICT;
        return pk_push(u, o);
    }
    if (strcmp(module, "torch._utils") == 0 && strcmp(name, "_rebuild_tensor_v2") == 0) {
        if (!(o = pk_new(u, PK_GLOBAL))) return u->new_st;
        o->global = G_REBUILD_TENSOR_V2;
        return pk_push(u, o);
    }
    if (strcmp(module, "torch") == 0) {
        for (size_t i = 0; i < sizeof storage_types / sizeof storage_types[0]; i++) {
            if (strcmp(name, storage_types[i].cls) == 0) {
                if (!(o = pk_new(u, PK_GLOBAL))) return u->new_st;
                o->global = G_STORAGE;
                o->dtype = storage_types[i].dtype;
                return pk_push(u, o);
            }
        }
    }
    return pk_err(u, "refused global %s.%s", module, name);
}

static bool is_int(const pk_obj *o) { return o && o->kind == PK_INT; }
static bool is_str(const pk_obj *o, const char *s)
{
    return o && o->kind == PK_STR && (!s || strcmp(o->s, s) == 0);
}

static bool is_int_tuple(const pk_obj *o)
{
    if (!o || o->kind != PK_TUPLE || o->n > TB_DIMS_MAX) return false;
    for (size_t i = 0; i < o->n; i++)
        if (!is_int(o->items[i])) return false;
    return true;
}

/* REDUCE: "call" one of the two allowed callables, symbolically. */
static cdx_status pk_reduce(pk *u)
{
    pk_obj *args = pk_pop(u), *fn = pk_pop(u), *o;
    if (!args || !fn) return pk_err(u, "stack underflow in REDUCE");
    if (fn->kind != PK_GLOBAL || args->kind != PK_TUPLE) return pk_err(u, "refused REDUCE");
    if (fn->global == G_ORDEREDDICT) {
        if (args->n != 0) return pk_err(u, "refused OrderedDict with arguments");
        return pk_push(u, pk_new(u, PK_DICT));
    }
    if (fn->global == G_REBUILD_TENSOR_V2) {
        /* (storage, storage_offset, size, stride, requires_grad,
         *  backward_hooks[, metadata]); hooks and metadata are ignored. */
        if (args->n != 6 && args->n != 7)
            return pk_err(u, "_rebuild_tensor_v2 with %zu arguments", args->n);
        if (args->items[0]->kind != PK_STORAGE || !is_int(args->items[1]) ||
            !is_int_tuple(args->items[2]) || !is_int_tuple(args->items[3]) ||
            args->items[2]->n != args->items[3]->n || args->items[4]->kind != PK_BOOL)
            return pk_err(u, "_rebuild_tensor_v2 with unexpected arguments");
        if (!(o = pk_new(u, PK_TENSOR))) return u->new_st;
        o->args = args;
        return pk_push(u, o);
    }
    return pk_err(u, "refused REDUCE of a storage type");
}

/* BINPERSID: the persistent id torch writes for a storage. */
static cdx_status pk_persid(pk *u)
{
    pk_obj *pid = pk_pop(u), *o;
    if (!pid) return pk_err(u, "stack underflow in BINPERSID");
    if (pid->kind != PK_TUPLE || pid->n != (u->legacy ? 6u : 5u) || !is_str(pid->items[0], "storage") ||
        pid->items[1]->kind != PK_GLOBAL || pid->items[1]->global != G_STORAGE ||
        !is_str(pid->items[2], NULL) || !is_str(pid->items[3], NULL) ||
        !is_int(pid->items[4]) || pid->items[4]->i < 0)
        return pk_err(u, "refused persistent id (not a torch storage reference)");
    /* legacy: view metadata, set only for a storage saved as a view of
     * another (torch stopped writing those); refuse rather than guess */
    if (u->legacy && pid->items[5]->kind != PK_NONE)
        return pk_err(u, "refused persistent id with storage view metadata");
    if (!(o = pk_new(u, PK_STORAGE))) return u->new_st;
    o->args = pid;
    return pk_push(u, o);
}

static cdx_status pk_memo_put(pk *u, uint64_t idx)
{
    pk_obj *top = pk_top(u);
    if (!top) return pk_err(u, "stack underflow in memo put");
    /* A real pickle numbers its memo entries 0, 1, 2 ... and each put
     * costs at least two bytes, so an index past the pickle's length is
     * hostile: refusing it bounds the memo's size. */
    if (idx >= u->len) return pk_err(u, "memo index %llu out of range", (unsigned long long)idx);
    if (idx >= u->memo_cap) {
        size_t old = u->memo_cap;
        pk_obj **m = cdx_grow(u->memo, &u->memo_cap, (size_t)idx + 1, sizeof *m, 64);
        if (!m) return pk_nomem(u);
        memset(m + old, 0, (u->memo_cap - old) * sizeof *m); /* indexed: unset entries are NULL */
        u->memo = m;
    }
    if (!u->memo[idx]) u->memo_count++;
    u->memo[idx] = top;
    return CDX_OK;
}

static cdx_status pk_memo_get(pk *u, uint64_t idx)
{
    if (idx >= u->memo_cap || !u->memo[idx])
        return pk_err(u, "memo index %llu not set", (unsigned long long)idx);
    return pk_push(u, u->memo[idx]);
}

/* Run the pickle to STOP; *result is the object it returns. */
static cdx_status pk_run(pk *u, pk_obj **result)
{
    cdx_status st = CDX_OK;
    uint64_t v;
    pk_obj *o, *k, *c;
    size_t from = 0;
    char module[TB_NAME_MAX], name[TB_NAME_MAX];

    for (;;) {
        uint8_t op;
        if (u->pos >= u->len) return pk_err(u, "truncated: no STOP opcode");
        u->op_pos = u->pos;
        op = u->p[u->pos++];
        switch (op) {
        case 0x80: /* PROTO */
            if ((st = pk_uint(u, 1, &v)) != CDX_OK) return st;
            if (v > 5) return pk_err(u, "pickle protocol %llu", (unsigned long long)v);
            break;
        case 0x95: /* FRAME: a length hint; the whole pickle is in memory */
            if ((st = pk_uint(u, 8, &v)) != CDX_OK) return st;
            break;
        case '}': /* EMPTY_DICT */
            st = pk_push(u, pk_new(u, PK_DICT));
            break;
        case ']': /* EMPTY_LIST */
            st = pk_push(u, pk_new(u, PK_LIST));
            break;
        case ')': /* EMPTY_TUPLE */
            st = pk_push(u, pk_new(u, PK_TUPLE));
            break;
        case '(': /* MARK */
            if (u->n_marks == TB_MARKS_MAX)
                return pk_err(u, "nesting deeper than %d marks", TB_MARKS_MAX);
            u->marks[u->n_marks++] = u->sp;
            break;
        case 'X': /* BINUNICODE */
            if ((st = pk_uint(u, 4, &v)) != CDX_OK) return st;
            st = pk_str(u, (size_t)v);
            break;
        case 0x8c: /* SHORT_BINUNICODE */
            if ((st = pk_uint(u, 1, &v)) != CDX_OK) return st;
            st = pk_str(u, (size_t)v);
            break;
        case 'J': /* BININT: signed 32-bit */
            if ((st = pk_uint(u, 4, &v)) != CDX_OK) return st;
            st = pk_int(u, (int64_t)(int32_t)(uint32_t)v);
            break;
        case 'K': /* BININT1 */
            if ((st = pk_uint(u, 1, &v)) != CDX_OK) return st;
            st = pk_int(u, (int64_t)v);
            break;
        case 'M': /* BININT2 */
            if ((st = pk_uint(u, 2, &v)) != CDX_OK) return st;
            st = pk_int(u, (int64_t)v);
            break;
        case 0x8a: /* LONG1: n-byte little-endian two's complement */
            if ((st = pk_uint(u, 1, &v)) != CDX_OK) return st;
            if (v > 8) return pk_err(u, "LONG1 of %llu bytes", (unsigned long long)v);
            {
                size_t n = (size_t)v;
                uint64_t x = 0;
                if (n > 0 && (st = pk_uint(u, n, &x)) != CDX_OK) return st;
                if (n > 0 && n < 8 && (x >> (8 * n - 1)) & 1) x |= ~(uint64_t)0 << (8 * n);
                st = pk_int(u, (int64_t)x);
            }
            break;
        case 'N': /* NONE */
            st = pk_push(u, pk_new(u, PK_NONE));
            break;
        case 0x88: /* NEWTRUE */
        case 0x89: /* NEWFALSE */
            if ((o = pk_new(u, PK_BOOL))) o->i = op == 0x88;
            st = pk_push(u, o);
            break;
        case 't': /* TUPLE */
        case 'l': /* LIST */
            if ((st = pk_pop_mark(u, &from)) != CDX_OK) return st;
            if (!(o = pk_new(u, op == 't' ? PK_TUPLE : PK_LIST))) return u->new_st;
            for (size_t i = from; i < u->sp; i++)
                if ((st = pk_append(u, o, u->stack[i])) != CDX_OK) return st;
            u->sp = from;
            st = pk_push(u, o);
            break;
        case 0x85: /* TUPLE1 */
        case 0x86: /* TUPLE2 */
        case 0x87: /* TUPLE3 */
        {
            size_t n = (size_t)(op - 0x84);
            if (u->sp - pk_floor(u) < n) return pk_err(u, "stack underflow in TUPLE%zu", n);
            if (!(o = pk_new(u, PK_TUPLE))) return u->new_st;
            for (size_t i = u->sp - n; i < u->sp; i++)
                if ((st = pk_append(u, o, u->stack[i])) != CDX_OK) return st;
            u->sp -= n;
            st = pk_push(u, o);
            break;
        }
        case 'q': /* BINPUT */
            if ((st = pk_uint(u, 1, &v)) != CDX_OK) return st;
            st = pk_memo_put(u, v);
            break;
        case 'r': /* LONG_BINPUT */
            if ((st = pk_uint(u, 4, &v)) != CDX_OK) return st;
            st = pk_memo_put(u, v);
            break;
        case 0x94: /* MEMOIZE: the next free index */
            st = pk_memo_put(u, u->memo_count);
            break;
        case 'h': /* BINGET */
            if ((st = pk_uint(u, 1, &v)) != CDX_OK) return st;
            st = pk_memo_get(u, v);
            break;
        case 'j': /* LONG_BINGET */
            if ((st = pk_uint(u, 4, &v)) != CDX_OK) return st;
            st = pk_memo_get(u, v);
            break;
        case 'c': /* GLOBAL "module\nname\n" */
            if ((st = pk_line(u, module, sizeof module)) != CDX_OK) return st;
            if ((st = pk_line(u, name, sizeof name)) != CDX_OK) return st;
            st = pk_global_op(u, module, name);
            break;
        case 0x93: /* STACK_GLOBAL: module and name from the stack */
            o = pk_pop(u);
            k = pk_pop(u);
            if (!is_str(o, NULL) || !is_str(k, NULL))
                return pk_err(u, "STACK_GLOBAL without two strings");
            st = pk_global_op(u, k->s, o->s);
            break;
        case 'R': /* REDUCE */
            st = pk_reduce(u);
            break;
        case 'Q': /* BINPERSID */
            st = pk_persid(u);
            break;
        case 's': /* SETITEM */
            o = pk_pop(u);
            k = pk_pop(u);
            c = pk_top(u);
            if (!o || !k || !c) return pk_err(u, "stack underflow in SETITEM");
            if (c->kind != PK_DICT) return pk_err(u, "SETITEM on a non-dict");
            if ((st = pk_append(u, c, k)) != CDX_OK) return st;
            st = pk_append(u, c, o);
            break;
        case 'u': /* SETITEMS: the dict sits just below the mark */
            if ((st = pk_pop_mark(u, &from)) != CDX_OK) return st;
            if (from <= pk_floor(u)) return pk_err(u, "stack underflow in SETITEMS");
            c = u->stack[from - 1];
            if (c->kind != PK_DICT) return pk_err(u, "SETITEMS on a non-dict");
            if ((u->sp - from) % 2) return pk_err(u, "SETITEMS with an odd item count");
            for (size_t i = from; i < u->sp; i++)
                if ((st = pk_append(u, c, u->stack[i])) != CDX_OK) return st;
            u->sp = from;
            break;
        case 'a': /* APPEND */
            o = pk_pop(u);
            c = pk_top(u);
            if (!o || !c) return pk_err(u, "stack underflow in APPEND");
            if (c->kind != PK_LIST) return pk_err(u, "APPEND on a non-list");
            st = pk_append(u, c, o);
            break;
        case 'e': /* APPENDS: the list sits just below the mark */
            if ((st = pk_pop_mark(u, &from)) != CDX_OK) return st;
            if (from <= pk_floor(u)) return pk_err(u, "stack underflow in APPENDS");
            c = u->stack[from - 1];
            if (c->kind != PK_LIST) return pk_err(u, "APPENDS on a non-list");
            for (size_t i = from; i < u->sp; i++)
                if ((st = pk_append(u, c, u->stack[i])) != CDX_OK) return st;
            u->sp = from;
            break;
        case 'b': /* BUILD: OrderedDict state (_metadata); dropped */
            o = pk_pop(u);
            c = pk_top(u);
            if (!o || !c) return pk_err(u, "stack underflow in BUILD");
            if (c->kind != PK_DICT) return pk_err(u, "refused BUILD on a non-dict");
            break;
        case '.': /* STOP */
            if (!(o = pk_pop(u))) return pk_err(u, "stack underflow in STOP");
            *result = o;
            return CDX_OK;
        default:
            return pk_err(u, "refused opcode 0x%02x", op);
        }
        if (st != CDX_OK) return st;
    }
}

/* ------------------------------------------------------------------ */
/* the archive                                                         */
/* ------------------------------------------------------------------ */

static const char *zip_msg(zip_t *z) { return zip_error_strerror(zip_get_error(z)); }

/* Read a whole (bounded) entry into a heap buffer. */
static cdx_status read_entry(zip_t *z, const char *path, zip_uint64_t idx, zip_uint64_t max,
                             uint8_t **out, size_t *out_len)
{
    cdx_status st = CDX_OK;
    zip_stat_t zs;
    zip_file_t *f = NULL;
    uint8_t *buf = NULL;
    size_t got = 0, size;

    zip_stat_init(&zs);
    if (zip_stat_index(z, idx, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE)) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: %s", path, zip_msg(z));
        goto cleanup;
    }
    if (zs.size > max) {
        st = cdx_fail(CDX_ERR_LIMIT, "%s: %s is %llu bytes, over the %llu-byte limit", path,
                      zs.name, (unsigned long long)zs.size, (unsigned long long)max);
        goto cleanup;
    }
    size = (size_t)zs.size;
    if (!(buf = malloc(size ? size : 1))) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    if (!(f = zip_fopen_index(z, idx, 0))) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: %s: %s", path, zs.name, zip_msg(z));
        goto cleanup;
    }
    while (got < size) {
        zip_int64_t n = zip_fread(f, buf + got, size - got);
        if (n <= 0) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: %s: %s", path, zs.name,
                          n < 0 ? zip_error_strerror(zip_file_get_error(f)) : "short read");
            goto cleanup;
        }
        got += (size_t)n;
    }
    *out = buf;
    *out_len = size;
    buf = NULL;
cleanup:
    if (f) zip_fclose(f);
    free(buf);
    return st;
}

/* Storage keys become entry names: keep them to plain names. */
static bool plain_key(const char *s)
{
    return s[0] != '\0' && !strchr(s, '/') && !strstr(s, "..");
}

/* Register one state-dict entry as a tensor (name, dtype, shape); its
 * data is placed by the caller.  *out is valid until the next add. */
static cdx_status new_tensor(cdx_weights *w, int src, const char *path, const pk_obj *key,
                             const pk_obj *val, cdx_wtensor **out)
{
    const pk_obj *args, *size;
    int64_t shape[TB_DIMS_MAX];
    cdx_wtensor *t;

    if (key->kind != PK_STR || memchr(key->s, '\0', key->slen))
        return cdx_fail(CDX_ERR_FORMAT, "%s: data.pkl: state dict key is not a name", path);
    if (!val || val->kind != PK_TENSOR)
        return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: value is not a tensor", path, key->s);
    args = val->args;
    size = args->items[2];
    if (!(t = cdx_weights_add_tensor(w, src, key->s))) return CDX_ERR_NOMEM;
    for (size_t d = 0; d < size->n; d++) shape[d] = size->items[d]->i;
    *out = t;
    /* args[0] is a PK_STORAGE whose persistent id names the dtype */
    return cdx_wtensor_set_layout(t, path, args->items[0]->args->items[1]->dtype, (int)size->n,
                                  shape);
}

/* The view (offset, sizes, strides) of tensor t must stay inside its
 * storage of storage_numel elements; sets t->offset to the view's first
 * byte within the storage and marks non-contiguous views unsupported. */
static cdx_status place_view(cdx_wtensor *t, const char *path, const pk_obj *val,
                             size_t storage_numel)
{
    const pk_obj *args = val->args, *stride = args->items[3];
    const pk_obj *size = args->items[2];
    size_t ndim = size->n, offset, extent, want = 1, tmp;

    if (args->items[1]->i < 0)
        return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: negative storage offset", path, t->name);
    offset = (size_t)args->items[1]->i;
    if (t->info.numel > 0) {
        /* Last element touched: offset + sum((size-1) * stride). */
        extent = offset;
        for (size_t d = 0; d < ndim; d++) {
            int64_t sd = stride->items[d]->i;
            if (sd < 0 ||
                !cdx_mul_ok((size_t)(size->items[d]->i - 1), (size_t)sd, &tmp) ||
                !cdx_add_ok(extent, tmp, &extent))
                return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: bad strides", path, t->name);
        }
        if (extent >= storage_numel)
            return cdx_fail(CDX_ERR_FORMAT,
                            "%s: tensor %s: view ends at element %zu of a %zu-element storage",
                            path, t->name, extent + 1, storage_numel);
        /* Row-major contiguous: stride[d] = prod(size[d+1:]); dims of
         * size 1 may carry any stride (torch does not normalise them). */
        for (size_t d = ndim; d-- > 0;) {
            int64_t sz = size->items[d]->i;
            if (sz != 1 && (size_t)stride->items[d]->i != want) {
                if (!t->unsupported) t->unsupported = "non-contiguous strides";
                break;
            }
            want *= (size_t)sz; /* cannot overflow: numel was checked */
        }
    }
    if (!cdx_mul_ok(offset, t->elem_size, &t->offset))
        return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: storage offset overflows", path, t->name);
    return CDX_OK;
}

/* Turn one state-dict entry into a registry tensor, validating it
 * against its storage entry in the archive. */
static cdx_status add_tensor(cdx_weights *w, int src, zip_t *z, const char *path,
                             const char *prefix, const pk_obj *key, const pk_obj *val)
{
    const pk_obj *pid;
    const char *skey;
    size_t esize, storage_numel, storage_bytes;
    char *entry = NULL;
    zip_int64_t idx;
    zip_stat_t zs;
    cdx_wtensor *t = NULL;
    cdx_status st;

    if ((st = new_tensor(w, src, path, key, val, &t)) != CDX_OK) return st;
    esize = t->elem_size;
    pid = val->args->items[0]->args;
    skey = pid->items[2]->s;

    if (!plain_key(skey))
        return cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: bad storage key '%s'", path, key->s,
                        skey);
    entry = malloc(strlen(prefix) + strlen("data/") + strlen(skey) + 1);
    if (!entry) return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
    snprintf(entry, strlen(prefix) + strlen("data/") + strlen(skey) + 1, "%sdata/%s", prefix,
             skey);
    idx = zip_name_locate(z, entry, 0);
    zip_stat_init(&zs);
    if (idx < 0 || zip_stat_index(z, (zip_uint64_t)idx, 0, &zs) != 0 ||
        !(zs.valid & ZIP_STAT_SIZE)) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: storage %s is missing from the archive",
                      path, key->s, entry);
        goto cleanup;
    }

    /* The storage entry must hold numel elements, and the view
     * (offset, sizes, strides) must stay inside them. */
    storage_numel = (size_t)pid->items[4]->i;
    if (!cdx_mul_ok(storage_numel, esize, &storage_bytes) || storage_bytes > zs.size) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: storage %s holds %llu bytes, needs %llu",
                      path, key->s, entry, (unsigned long long)zs.size,
                      (unsigned long long)storage_numel * esize);
        goto cleanup;
    }
    if ((st = place_view(t, path, val, storage_numel)) != CDX_OK) goto cleanup;
    t->zip_index = (uint64_t)idx;
cleanup:
    free(entry);
    return st;
}

/* ------------------------------------------------------------------ */
/* the legacy format (torch < 1.6)                                     */
/* ------------------------------------------------------------------ */

/* The first pickle: protocol 2, LONG1 of 10 bytes 0x1950a86a20f9469cfc6c
 * (torch's MAGIC_NUMBER), STOP.  Compared as bytes: LONG1 of 10 bytes is
 * nothing the interpreter needs otherwise. */
static const uint8_t legacy_magic[15] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                         0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};
#define LEGACY_PROTOCOL 1001

/* One storage of the legacy file: its key, dtype and element count from
 * the persistent ids, and where its bytes start in the file. */
typedef struct lstore {
    const char *key, *dtype;
    size_t numel, esize, data;
    bool placed;
} lstore;

static int lstore_cmp(const void *a, const void *b)
{
    return strcmp(((const lstore *)a)->key, ((const lstore *)b)->key);
}

/* Run the next pickle of the file from *pos; each has its own memo. */
static cdx_status legacy_pickle(pk *u, const uint8_t *map, size_t len, size_t *pos,
                                pk_obj **out)
{
    cdx_status st;
    u->p = map;
    u->pos = *pos;
    /* bound one pickle like data.pkl (also bounds the memo) */
    u->len = len - *pos > TB_PKL_MAX ? *pos + TB_PKL_MAX : len;
    u->sp = 0;
    u->n_marks = 0;
    u->memo_count = 0;
    if (u->memo) memset(u->memo, 0, u->memo_cap * sizeof *u->memo);
    if ((st = pk_run(u, out)) != CDX_OK) return st;
    *pos = u->pos;
    return CDX_OK;
}

static const pk_obj *dict_get(const pk_obj *d, const char *key)
{
    for (size_t i = 0; i + 1 < d->n; i += 2)
        if (is_str(d->items[i], key)) return d->items[i + 1];
    return NULL;
}

static cdx_status load_legacy(cdx_weights *w, const char *path, size_t len)
{
    cdx_status st = CDX_OK;
    int fd, src = -1;
    void *map;
    char *src_path;
    size_t pos = sizeof legacy_magic, n_st = 0;
    pk u;
    pk_obj *ver = NULL, *info = NULL, *root = NULL, *keys = NULL;
    const pk_obj *le;
    lstore *sto = NULL;

    memset(&u, 0, sizeof u);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return cdx_fail(CDX_ERR_IO, "%s: %s", path, strerror(errno));
    map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return cdx_fail(CDX_ERR_IO, "%s: mmap: %s", path, strerror(errno));
    if (!(src_path = strdup(path))) {
        munmap(map, len);
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
    }
    if ((st = cdx_weights_add_source(w, src_path, CDX_WSRC_TORCHLEGACY, &src)) != CDX_OK) {
        munmap(map, len);
        return st;
    }
    /* The source owns the mapping from here: cdx_weights_close unmaps it. */
    w->src[src].map = map;
    w->src[src].map_len = len;

    u.file = path;
    u.legacy = true;
    if ((st = legacy_pickle(&u, map, len, &pos, &ver)) != CDX_OK) goto cleanup;
    if (!is_int(ver) || ver->i != LEGACY_PROTOCOL) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: legacy torch file with protocol version %lld, not %d",
                      path, is_int(ver) ? (long long)ver->i : -1LL, LEGACY_PROTOCOL);
        goto cleanup;
    }
    if ((st = legacy_pickle(&u, map, len, &pos, &info)) != CDX_OK) goto cleanup;
    if (info->kind != PK_DICT || !(le = dict_get(info, "little_endian")) || le->kind != PK_BOOL) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: legacy torch file without its system info", path);
        goto cleanup;
    }
    if (!le->i) {
        st = cdx_fail(CDX_ERR_UNSUPPORTED, "%s: written on a big-endian machine", path);
        goto cleanup;
    }
    if ((st = legacy_pickle(&u, map, len, &pos, &root)) != CDX_OK) goto cleanup;
    if (root->kind != PK_DICT) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: data.pkl: the pickle is not a state dict", path);
        goto cleanup;
    }
    if ((st = legacy_pickle(&u, map, len, &pos, &keys)) != CDX_OK) goto cleanup;
    if (keys->kind != PK_LIST) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: the storage key list is not a list", path);
        goto cleanup;
    }

    /* The storages the state dict refers to, by key (one storage may
     * back several tensors). */
    if (!(sto = calloc(root->n / 2 + 1, sizeof *sto))) {
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (size_t i = 0; i + 1 < root->n; i += 2) {
        const pk_obj *val = root->items[i + 1], *pid;
        bool isf;
        cdx_dtype dt;
        if (!val || val->kind != PK_TENSOR) continue; /* new_tensor reports it below */
        pid = val->args->items[0]->args;
        sto[n_st].key = pid->items[2]->s;
        sto[n_st].dtype = pid->items[1]->dtype;
        sto[n_st].numel = (size_t)pid->items[4]->i;
        if (!cdx_wdtype_lookup(sto[n_st].dtype, &sto[n_st].esize, &isf, &dt)) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: storage %s: unknown dtype", path, sto[n_st].key);
            goto cleanup;
        }
        n_st++;
    }
    qsort(sto, n_st, sizeof *sto, lstore_cmp);
    {
        size_t m = 0;
        for (size_t i = 0; i < n_st; i++) {
            if (m && strcmp(sto[m - 1].key, sto[i].key) == 0) {
                if (sto[m - 1].dtype != sto[i].dtype || sto[m - 1].numel != sto[i].numel) {
                    st = cdx_fail(CDX_ERR_FORMAT, "%s: storage %s is described two ways", path,
                                  sto[i].key);
                    goto cleanup;
                }
                continue;
            }
            sto[m++] = sto[i];
        }
        n_st = m;
    }

    /* The storages' bytes, in the key list's order. */
    for (size_t i = 0; i < keys->n; i++) {
        lstore probe = {0}, *s;
        uint64_t numel = 0;
        size_t bytes, end;
        if (!is_str(keys->items[i], NULL)) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: the storage key list holds a non-string", path);
            goto cleanup;
        }
        probe.key = keys->items[i]->s;
        s = bsearch(&probe, sto, n_st, sizeof *sto, lstore_cmp);
        if (!s || s->placed) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: storage %s: %s", path, probe.key,
                          s ? "listed twice" : "listed but used by no tensor");
            goto cleanup;
        }
        if (len - pos < 8) goto truncated;
        for (int b = 7; b >= 0; b--) numel = (numel << 8) | ((const uint8_t *)map)[pos + (size_t)b];
        if (numel != s->numel) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: storage %s holds %llu elements, the pickle says %zu",
                          path, s->key, (unsigned long long)numel, s->numel);
            goto cleanup;
        }
        pos += 8;
        if (!cdx_mul_ok(s->numel, s->esize, &bytes) || !cdx_add_ok(pos, bytes, &end) || end > len)
            goto truncated;
        s->data = pos;
        s->placed = true;
        pos = end;
    }
    if (pos != len) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: %zu bytes after the last storage", path, len - pos);
        goto cleanup;
    }

    for (size_t i = 0; i + 1 < root->n; i += 2) {
        const pk_obj *val = root->items[i + 1];
        lstore probe = {0}, *s;
        cdx_wtensor *t = NULL;
        if ((st = new_tensor(w, src, path, root->items[i], val, &t)) != CDX_OK) goto cleanup;
        probe.key = val->args->items[0]->args->items[2]->s;
        s = bsearch(&probe, sto, n_st, sizeof *sto, lstore_cmp);
        if (!s->placed) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: storage %s is missing from the file",
                          path, t->name, s->key);
            goto cleanup;
        }
        if ((st = place_view(t, path, val, s->numel)) != CDX_OK) goto cleanup;
        t->offset += s->data; /* cannot overflow: the view lies inside the file */
    }
    goto cleanup;
truncated:
    st = cdx_fail(CDX_ERR_FORMAT, "%s: truncated (the storages end past the file)", path);
cleanup:
    free(sto);
    pk_release(&u);
    return st;
}

cdx_status cdx_tb_load(cdx_weights *w, const char *path)
{
    cdx_status st = CDX_OK;
    zip_t *z = NULL;
    int zerr = 0, src = -1;
    char *src_path = NULL, *prefix = NULL;
    uint8_t *pkl = NULL;
    size_t pkl_len = 0;
    zip_int64_t n_entries, pkl_idx = -1;
    pk u;
    pk_obj *root = NULL;
    struct stat sb;

    memset(&u, 0, sizeof u);
    if (stat(path, &sb) != 0) return cdx_fail(CDX_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return cdx_fail(CDX_ERR_IO, "%s: not a regular file", path);
    if (sb.st_size == 0) return cdx_fail(CDX_ERR_FORMAT, "%s: empty file", path);
    {
        /* the legacy format starts with its magic-number pickle */
        uint8_t head[sizeof legacy_magic];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, head, sizeof head) : -1;
        if (fd >= 0) close(fd);
        if (n == (ssize_t)sizeof head && memcmp(head, legacy_magic, sizeof head) == 0)
            return load_legacy(w, path, (size_t)sb.st_size);
    }

    z = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
    if (!z) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        if (zerr == ZIP_ER_OPEN || zerr == ZIP_ER_READ || zerr == ZIP_ER_MEMORY)
            st = cdx_fail(zerr == ZIP_ER_MEMORY ? CDX_ERR_NOMEM : CDX_ERR_IO, "%s: %s", path,
                          zip_error_strerror(&ze));
        else
            st = cdx_fail(CDX_ERR_FORMAT,
                          "%s: not a readable zip archive (%s) nor torch's legacy format",
                          path, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return st;
    }
    /* The source owns the handle from here: cdx_weights_close frees it. */
    if (!(src_path = strdup(path))) {
        zip_discard(z);
        return cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
    }
    st = cdx_weights_add_source(w, src_path, CDX_WSRC_TORCHZIP, &src);
    if (st != CDX_OK) {
        zip_discard(z);
        return st;
    }
    w->src[src].zip = z;

    /* Exactly one PREFIX/data.pkl, PREFIX being a single directory
     * (torch names it after the file, or "archive"). */
    n_entries = zip_get_num_entries(z, 0);
    for (zip_int64_t i = 0; i < n_entries; i++) {
        const char *name = zip_get_name(z, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
        const char *slash = name ? strchr(name, '/') : NULL;
        if (!slash || strcmp(slash + 1, "data.pkl") != 0) continue;
        if (pkl_idx >= 0) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: more than one data.pkl", path);
            goto cleanup;
        }
        pkl_idx = i;
        if (!(prefix = strndup(name, (size_t)(slash - name) + 1))) {
            st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
            goto cleanup;
        }
    }
    if (pkl_idx < 0) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: no data.pkl in the archive (not a torch.save file)",
                      path);
        goto cleanup;
    }
    st = read_entry(z, path, (zip_uint64_t)pkl_idx, TB_PKL_MAX, &pkl, &pkl_len);
    if (st != CDX_OK) goto cleanup;

    u.file = path;
    u.p = pkl;
    u.len = pkl_len;
    st = pk_run(&u, &root);
    if (st != CDX_OK) goto cleanup;
    if (root->kind != PK_DICT) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: data.pkl: the pickle is not a state dict", path);
        goto cleanup;
    }
    for (size_t i = 0; i + 1 < root->n; i += 2) {
        st = add_tensor(w, src, z, path, prefix, root->items[i], root->items[i + 1]);
        if (st != CDX_OK) goto cleanup;
    }
cleanup:
    pk_release(&u);
    free(pkl);
    free(prefix);
    return st;
}

cdx_status cdx_tb_read(cdx_weights *w, const cdx_wtensor *t, void *dst)
{
    const char *path = w->src[t->src].path;
    zip_t *z = w->src[t->src].zip;
    zip_file_t *f = NULL;
    zip_stat_t zs;
    uint8_t *out = dst, scratch[4096];
    size_t skip = t->offset, got = 0;
    bool seeked = false;
    cdx_status st = CDX_OK;

    zip_stat_init(&zs);
    if (zip_stat_index(z, t->zip_index, 0, &zs) != 0 ||
        !(f = zip_fopen_index(z, t->zip_index, 0))) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: %s", path, t->name, zip_msg(z));
        goto cleanup;
    }
    /* torch stores entries uncompressed, so seeking is direct; a
     * compressed entry (some other writer) is skipped through instead. */
    if (skip > 0 && (zs.valid & ZIP_STAT_COMP_METHOD) && zs.comp_method == ZIP_CM_STORE) {
        if (zip_fseek(f, (zip_int64_t)skip, SEEK_SET) != 0) {
            st = cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: %s", path, t->name,
                          zip_error_strerror(zip_file_get_error(f)));
            goto cleanup;
        }
        skip = 0;
        seeked = true;
    }
    while (skip > 0) {
        zip_int64_t n = zip_fread(f, scratch, skip < sizeof scratch ? skip : sizeof scratch);
        if (n <= 0) goto short_read;
        skip -= (size_t)n;
    }
    while (got < t->nbytes) {
        zip_int64_t n = zip_fread(f, out + got, t->nbytes - got);
        if (n <= 0) goto short_read;
        got += (size_t)n;
    }
    /* libzip checks the entry's CRC only when a read reaches its end.
     * When this tensor is the whole storage read from the start (the
     * usual case), ask for one more byte so corruption is caught. */
    if (!seeked && (zs.valid & ZIP_STAT_SIZE) && t->offset + t->nbytes == zs.size &&
        zip_fread(f, scratch, 1) != 0)
        goto short_read;
    goto cleanup;
short_read:
    st = cdx_fail(CDX_ERR_FORMAT, "%s: tensor %s: storage data is truncated or corrupt (%s)",
                  path, t->name, zip_error_strerror(zip_file_get_error(f)));
cleanup:
    if (f) zip_fclose(f);
    return st;
}

void cdx_tb_close_zip(void *zip)
{
    if (zip) zip_discard(zip);
}
