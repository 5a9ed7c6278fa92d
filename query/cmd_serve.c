/*
 * cmd_serve.c - `clipdex serve`: the photo library as a local web app.
 *
 * One process holds the store (read-only, so it runs beside clipdexd and
 * sees every batch the daemon commits: cdx_store_search replays the change
 * log first) and the text tower, loaded once: a query costs tokenize +
 * encode + search.  HTTP is libmicrohttpd with a fixed pool of worker
 * threads and a connection limit; store and model calls are serialised by
 * one mutex (neither handle is shared between threads otherwise), while
 * thumbnails are decoded and files sent outside it.
 *
 * Security, in order of the request's path:
 *   - loopback by default; any other address needs a token (given, or
 *     generated and printed once), checked on every request in constant
 *     time, from "Authorization: Bearer", a "token" parameter (the first
 *     page load, which then sets an HttpOnly SameSite=Strict cookie) or
 *     that cookie;
 *   - MHD limits the request line and headers (SERVE_MAX_URL); POST bodies
 *     are bounded (SERVE_MAX_UPLOAD), so are query length and result count;
 *   - GET never changes state; the one state change (a review mark) is a
 *     POST that must carry an "X-Clipdex" header, which a cross-site form
 *     cannot send without a CORS preflight we never answer;
 *   - clients name photos by id only, never by path; see serve_files.c for
 *     the checks on the file itself;
 *   - every answer has a Content-Security-Policy without inline script,
 *     and the page inserts every name and label as text.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <microhttpd.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve.h"
#include "banned.h"

#define DEFAULT_LISTEN "127.0.0.1:8731"
#define DEFAULT_THREADS 4
#define MAX_CONNECTIONS 64
#define DEFAULT_CACHE_MB 512

static const char CSP[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/* ---- requests and replies ---- */

const char *req_arg(const request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

struct args_ctx {
    const char *name;
    const char **out;
    size_t n, max;
};

static enum MHD_Result args_cb(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct args_ctx *a = cls;
    (void)kind;
    if (key && strcmp(key, a->name) == 0 && a->n < a->max) a->out[a->n++] = value ? value : "";
    return MHD_YES;
}

size_t req_args(const request *r, const char *name, const char **out, size_t max)
{
    struct args_ctx a = {name, out, 0, max};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, args_cb, &a);
    return a.n;
}

const char *req_header(const request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

void reply_json(reply *out, char *body, size_t len)
{
    free(out->body);
    out->status = MHD_HTTP_OK;
    out->type = "application/json";
    out->body = body;
    out->len = len;
}

void reply_json_error(reply *out, int status, const char *fmt, ...)
{
    char msg[512];
    char *buf = NULL;
    size_t len = 0;
    FILE *f;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(out->body);
    out->body = NULL;
    out->len = 0;
    if (out->fd >= 0) close(out->fd);
    out->fd = -1;
    out->status = status;
    out->type = "application/json";
    if (!(f = open_memstream(&buf, &len))) return;
    fputs("{\"error\":", f);
    print_json_string(f, msg);
    fputs("}\n", f);
    if (fclose(f) == 0) {
        out->body = buf;
        out->len = len;
    } else {
        free(buf);
    }
}

/* ---- tokens ---- */

/* Equal strings, in time that depends only on the length of b (the
 * secret's length is not hidden, its content is). */
static int token_equal(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    unsigned char d = (unsigned char)(na != nb);
    for (size_t i = 0; i < nb; i++) d |= (unsigned char)(b[i] ^ (i < na ? a[i] : 0));
    return d == 0;
}

/* The token=VALUE of a Cookie header, copied into buf. */
static const char *cookie_token(const char *cookie, char *buf, size_t n)
{
    const char *p = cookie;
    while (p && *p) {
        while (*p == ' ' || *p == ';') p++;
        if (strncmp(p, "clipdex_token=", 14) == 0) {
            const char *v = p + 14, *e = strchr(v, ';');
            size_t len = e ? (size_t)(e - v) : strlen(v);
            if (len >= n) return NULL;
            memcpy(buf, v, len);
            buf[len] = 0;
            return buf;
        }
        p = strchr(p, ';');
    }
    return NULL;
}

/* 0 when the request carries the token (or none is needed); *from_url
 * when it came as a parameter (the page then gets the cookie). */
static int check_token(const serve *s, const request *r, int *from_url)
{
    const char *auth, *t;
    char buf[256];
    *from_url = 0;
    if (!s->token) return 0;
    if ((auth = req_header(r, MHD_HTTP_HEADER_AUTHORIZATION)) && strncmp(auth, "Bearer ", 7) == 0 &&
        token_equal(auth + 7, s->token))
        return 0;
    if ((t = req_arg(r, "token")) && token_equal(t, s->token)) {
        *from_url = 1;
        return 0;
    }
    if ((t = cookie_token(req_header(r, MHD_HTTP_HEADER_COOKIE), buf, sizeof buf)) && token_equal(t, s->token))
        return 0;
    return -1;
}

/* ---- the HTTP handler ---- */

/* Per-connection state across MHD's calls: the POST body so far. */
struct conn_state {
    char *body;
    size_t len;
    int too_big;
};

static void route(serve *s, const request *r, reply *out)
{
    if (strncmp(r->path, "/api/", 5) == 0) {
        api_handle(s, r, out);
        return;
    }
    if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
        reply_json_error(out, MHD_HTTP_METHOD_NOT_ALLOWED, "%s: only GET", r->path);
        return;
    }
    for (const web_file *w = web_files; w->path; w++) {
        if (strcmp(w->path, r->path) == 0) {
            out->status = MHD_HTTP_OK;
            out->type = w->type;
            out->body = xmalloc(w->len ? w->len : 1);
            memcpy(out->body, w->data, w->len);
            out->len = w->len;
            out->cache = "no-cache";
            return;
        }
    }
    if (strcmp(r->path, "/favicon.ico") == 0) { /* asked for by every browser */
        out->status = MHD_HTTP_NO_CONTENT;
        out->cache = "max-age=86400";
        return;
    }
    reply_json_error(out, MHD_HTTP_NOT_FOUND, "no such page");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **con_cls)
{
    serve *s = cls;
    struct conn_state *cs = *con_cls;
    struct MHD_Response *resp = NULL;
    reply out = {.fd = -1};
    request r = {method, url, conn, NULL, 0};
    enum MHD_Result ret;
    int from_url = 0;
    (void)version;

    if (!cs) {
        cs = xcalloc(1, sizeof *cs);
        *con_cls = cs;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (cs->too_big || cs->len + *upload_data_size > SERVE_MAX_UPLOAD) {
            cs->too_big = 1;
        } else {
            char *p = xrealloc(cs->body, cs->len + *upload_data_size + 1);
            memcpy(p + cs->len, upload_data, *upload_data_size);
            cs->body = p;
            cs->len += *upload_data_size;
            p[cs->len] = 0;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    r.body = cs->body;
    r.body_len = cs->len;

    if (check_token(s, &r, &from_url) != 0)
        reply_json_error(&out, MHD_HTTP_UNAUTHORIZED, "a token is needed (Authorization: Bearer TOKEN)");
    else if (cs->too_big)
        reply_json_error(&out, MHD_HTTP_CONTENT_TOO_LARGE, "the request body is larger than %u bytes",
                         SERVE_MAX_UPLOAD);
    else
        route(s, &r, &out);

    if (out.fd >= 0) {
        resp = MHD_create_response_from_fd64((uint64_t)out.fd_size, out.fd);
        if (!resp) close(out.fd);
    } else {
        resp = MHD_create_response_from_buffer(out.len, out.body ? out.body : (void *)"",
                                               out.body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (!resp) free(out.body);
    }
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, out.type ? out.type : "application/octet-stream");
    MHD_add_response_header(resp, "Content-Security-Policy", CSP);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, out.cache ? out.cache : "no-store");
    if (from_url) {
        char c[320];
        snprintf(c, sizeof c, "clipdex_token=%s; Path=/; HttpOnly; SameSite=Strict", s->token);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, c);
    }
    ret = MHD_queue_response(conn, (unsigned)(out.status ? out.status : 500), resp);
    MHD_destroy_response(resp);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    struct conn_state *cs = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (cs) {
        free(cs->body);
        free(cs);
    }
    *con_cls = NULL;
}

/* MHD's unescaping, except that an escaped NUL (%00) becomes \x01: a C
 * string would end there, so "/api/image/1%00/etc/passwd" would read as
 * "/api/image/1".  With \x01 it is a malformed id. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    size_t n = MHD_http_unescape(s);
    (void)cls;
    (void)conn;
    for (size_t i = 0; i < n; i++)
        if (!s[i]) s[i] = '\x01';
    return n;
}

/* ---- options and startup ---- */

/* ADDR:PORT, [V6]:PORT, or :PORT (every address) into a socket address. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len, int *loopback)
{
    char host[256];
    const char *colon, *port;
    struct addrinfo hints = {0}, *ai = NULL;
    size_t n;
    if (spec[0] == '[') {
        const char *e = strchr(spec, ']');
        if (!e || e[1] != ':') return -1;
        n = (size_t)(e - spec - 1);
        if (n >= sizeof host) return -1;
        memcpy(host, spec + 1, n);
        port = e + 2;
    } else {
        if (!(colon = strrchr(spec, ':'))) return -1;
        n = (size_t)(colon - spec);
        if (n >= sizeof host) return -1;
        memcpy(host, spec, n);
        port = colon + 1;
    }
    host[n] = 0;
    size_t pv;
    if (parse_size(port, &pv) != 0 || pv > 65535) return -1;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(n ? host : NULL, port, &hints, &ai) != 0 || !ai) return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)ss;
        *loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else {
        const struct sockaddr_in6 *a = (const void *)ss;
        *loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    }
    return 0;
}

static char *make_token(void)
{
    unsigned char raw[24];
    char *t = xmalloc(2 * sizeof raw + 1);
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        free(t);
        return NULL;
    }
    for (size_t i = 0; i < sizeof raw; i++) snprintf(t + 2 * i, 3, "%02x", raw[i]);
    return t;
}

enum { OPT_LISTEN = OPT_CMD_BASE, OPT_TOKEN, OPT_THREADS, OPT_CACHE_MB };

int cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"cache-mb", required_argument, NULL, OPT_CACHE_MB},
        QCTX_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    const cdx_cmd *self = cmd_find("serve");
    const char *listen = DEFAULT_LISTEN, *token = getenv("CLIPDEX_SERVE_TOKEN");
    char *made = NULL;
    size_t threads = DEFAULT_THREADS, cache_mb = DEFAULT_CACHE_MB;
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    struct MHD_Daemon *d = NULL;
    int loopback = 0, ch, ret = EXIT_USAGE, sig;
    sigset_t set;
    serve s;

    memset(&s, 0, sizeof s);
    s.c.self = self;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (qctx_option(&s.c, ch, optarg)) continue;
        switch (ch) {
        case OPT_LISTEN: listen = optarg; break;
        case OPT_TOKEN: token = optarg; break;
        case OPT_THREADS:
            if (parse_size(optarg, &threads) != 0 || threads < 1 || threads > 64)
                return usage_error(self, "--threads must be 1..64, not '%s'", optarg);
            break;
        case OPT_CACHE_MB:
            if (parse_size(optarg, &cache_mb) != 0)
                return usage_error(self, "--cache-mb must be a number of megabytes, not '%s'", optarg);
            break;
        default:
            return usage_error(self, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error(self, "unexpected argument '%s'", argv[optind]);
    if (parse_listen(listen, &ss, &sslen, &loopback) != 0)
        return usage_error(self, "--listen takes ADDR:PORT (127.0.0.1:8731, [::1]:8731, 0.0.0.0:8731), not '%s'",
                           listen);
    if (token && (strlen(token) < 16 || strlen(token) > 200 || strcspn(token, "; \t\r\n,\"") != strlen(token)))
        return usage_error(self, "--token must be 16..200 characters without spaces, quotes, ',' or ';'");
    if (token && !*token) token = NULL;
    if (!loopback && !token) {
        if (!(token = made = make_token())) return error("cannot make a token: %s", strerror(errno));
        /* printed once: it is not stored anywhere */
        fprintf(stderr, "clipdex: %s is not a loopback address; token: %s\n", listen, token);
    }
    s.token = token;

    pthread_mutex_init(&s.lock, NULL);
    pthread_mutex_init(&s.cache_lock, NULL);
    if ((ret = qctx_open_store(&s.c)) != 0) goto cleanup;
    if ((ret = qctx_open_model(&s.c, CDX_TOWER_TEXT)) != 0) goto cleanup;
    s.cache_max = (int64_t)cache_mb << 20;
    if (cache_mb) files_cache_init(&s);

    /* Signals go to sigwait below, never to the worker threads. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
                             (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
                         0, NULL, NULL, handler, &s,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                         MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
                         MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(2 * SERVE_MAX_URL + 4096),
                         MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                         MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                         MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
                         MHD_OPTION_END);
    if (!d) {
        ret = error("cannot listen on %s: %s", listen, strerror(errno));
        goto cleanup;
    }
    {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        char host[INET6_ADDRSTRLEN] = "";
        if (ss.ss_family == AF_INET) inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
        else inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
        printf(ss.ss_family == AF_INET6 ? "clipdex serve: http://[%s]:%u/\n" : "clipdex serve: http://%s:%u/\n",
               host, info ? info->port : 0);
        fflush(stdout);
    }
    sigwait(&set, &sig);
    fprintf(stderr, "clipdex serve: stopping (%s)\n", strsignal(sig));
    ret = EXIT_FOUND;
cleanup:
    if (d) MHD_stop_daemon(d);
    api_release();
    qctx_release(&s.c);
    free(s.cache_dir);
    free(made);
    return ret;
}
