/*
 * host_app.h: the C interface between the `host` app server and an app.
 *
 * Interface version 1.0. This header is the whole contract: an app written
 * in any language that can make a shared library with C exports (C, C++,
 * Zig, Go with -buildmode=c-shared, Nim, Swift, ...) includes it, or
 * mirrors it, and is served like a Rust plugin: same workers, crash
 * isolation, hot swaps, limits, access log and metrics.
 *
 * A library holds:
 *   - exactly one `host_app_interface_version` (use HOST_APP_INTERFACE()
 *     in one source file): the version of this header it was built with;
 *   - one `host_app` descriptor per app, under any symbol name; the host's
 *     `LIB:SYMBOL` argument names one of them, e.g.
 *     `host ./libctime.so:application`.
 * A library may also export Rust (plugin-api) apps beside its C apps: the
 * symbol `LIB:SYMBOL` names decides which kind is loaded.
 *
 * Versions (the same rule as the Rust interface): a minor version only
 * adds (new fields at the end of a struct, new functions at the end of a
 * function table, new constants); an app built against an older minor of
 * the same major keeps loading. An app built against a newer minor, or
 * another major, is refused at load with one line naming both versions.
 * Every struct that may grow starts with `size`: whoever fills the struct
 * sets it to the sizeof it knows, and the reader uses no field past it.
 *
 * Conventions:
 *   - Text and bytes pass as pointer + length, never NUL-terminated. A
 *     pointer may be NULL only when its length is 0. Text is UTF-8.
 *   - Ownership is in the names:
 *       `borrowed`: valid only until the function that received it returns;
 *       `static`:   valid as long as the library stays loaded (the host never
 *                   unloads a library);
 *       `owned`:    the receiver releases it once, with the function given
 *                   beside it.
 *   - Functions that can fail return an int32_t: HOST_APP_OK (0), or a
 *     negative HOST_APP_ERR_* code; read_body returns a byte count >= 0 or
 *     a negative code.
 *   - Threads: an app's `call` runs on any of a worker's threads, and
 *     several calls run at the same time (wsgi.multithread): an app's own
 *     shared state needs its own locking. A worker is one process; apps
 *     in different workers share nothing.
 */
#ifndef HOST_APP_H
#define HOST_APP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header. */
#define HOST_APP_VERSION_MAJOR 1
#define HOST_APP_VERSION_MINOR 0

/* Return codes. */
#define HOST_APP_OK 0
/* The host refused the arguments before looking at them: a NULL pointer
 * with a length, a length past a documented cap (a negative length cast to
 * size_t is one), text that is not UTF-8, an unknown kind. */
#define HOST_APP_ERR_ARGUMENT (-1)
/* The host refused the call: an invalid status line or header,
 * start_response called twice without exc_info, a write before
 * start_response, a second file body, a file range outside the file, a
 * request body that broke a limit, a client that went away. last_error
 * says which. Stop producing the response and return. */
#define HOST_APP_ERR_REFUSED (-2)

/* Caps on what the app passes in. Past them: HOST_APP_ERR_ARGUMENT (or,
 * for a returned body, a 500). */
#define HOST_APP_MAX_STATUS_LEN 1024u
#define HOST_APP_MAX_HEADERS 1024u
#define HOST_APP_MAX_HEADER_LEN 65536u /* each name and each value */
#define HOST_APP_MAX_IO_LEN (1u << 30) /* one write, one read, one body */

/* Log levels, for host_services.log. */
#define HOST_APP_LOG_ERROR 1
#define HOST_APP_LOG_WARN 2
#define HOST_APP_LOG_INFO 3
#define HOST_APP_LOG_DEBUG 4
#define HOST_APP_LOG_TRACE 5

/* Text: UTF-8, not NUL-terminated. */
typedef struct host_app_str {
    const char *ptr;
    size_t len;
} host_app_str;

/* One header field (or one extra environ variable). */
typedef struct host_app_header {
    host_app_str name;
    host_app_str value;
} host_app_header;

/* The version symbol's type. */
typedef struct host_app_version {
    uint32_t major;
    uint32_t minor;
} host_app_version;

/* Request flags (PEP 3333's booleans). */
#define HOST_APP_MULTITHREAD 1u
#define HOST_APP_MULTIPROCESS 2u
#define HOST_APP_RUN_ONCE 4u

/* The request (PEP 3333's environ), `borrowed`: everything in it, headers
 * included, is valid until `call` returns. Read it on the calling thread,
 * or copy what must outlive the call. */
typedef struct host_app_request {
    uint32_t size;
    uint32_t flags; /* HOST_APP_MULTITHREAD | ... */
    host_app_str method;          /* REQUEST_METHOD */
    host_app_str script_name;     /* SCRIPT_NAME: where the app is mounted */
    host_app_str path_info;       /* PATH_INFO, percent-decoded */
    host_app_str query_string;    /* QUERY_STRING, as sent */
    host_app_str server_name;     /* SERVER_NAME */
    host_app_str server_port;     /* SERVER_PORT */
    host_app_str server_protocol; /* SERVER_PROTOCOL, e.g. "HTTP/1.1" */
    host_app_str remote_addr;     /* REMOTE_ADDR */
    host_app_str remote_port;     /* REMOTE_PORT */
    host_app_str url_scheme;      /* wsgi.url_scheme: "http" or "https" */
    /* The request's header fields in the order received, names in lower
     * case (CONTENT_TYPE is "content-type", HTTP_USER_AGENT "user-agent"). */
    const host_app_header *headers;
    size_t headers_len;
    /* Variables beyond PEP 3333's, e.g. SSL_CLIENT_VERIFY. */
    const host_app_header *extra;
    size_t extra_len;
} host_app_request;

/* What the host does for one call, `borrowed`: call these only from the
 * thread running `call`, and only until it returns. Every function takes
 * the gateway itself as its first argument. */
typedef struct host_app_gateway host_app_gateway;
struct host_app_gateway {
    uint32_t size;
    /* start_response(status, headers, exc_info). `status` is "200 OK";
     * headers are copied before it returns. exc_info: a length of 0 for
     * none; else the error text that makes a second call legal while the
     * head is not sent yet (WSGI's exc_info). */
    int32_t (*start_response)(const host_app_gateway *gateway, host_app_str status_borrowed,
                              const host_app_header *headers_borrowed, size_t headers_len,
                              host_app_str exc_info_borrowed);
    /* The write callable: sends `data` at once (the head goes first). */
    int32_t (*write)(const host_app_gateway *gateway, const uint8_t *data_borrowed, size_t len);
    /* wsgi.input: fills up to `len` bytes of `buf`; returns how many, 0 at
     * the end of the body, or a negative code. */
    int64_t (*read_body)(const host_app_gateway *gateway, uint8_t *buf_borrowed, size_t len);
    /* The file body: `len` bytes of the open file `fd` from `offset`, sent
     * in place of the returned body (which must then be empty). The host
     * duplicates the descriptor: the app may close `fd` once this returns.
     * The host sends the bytes without copying them where it can. */
    int32_t (*send_file)(const host_app_gateway *gateway, int fd_borrowed, uint64_t offset, uint64_t len);
    /* Why the last call on this gateway failed, `borrowed` until the next
     * call on it; {NULL, 0} if none failed. */
    host_app_str (*last_error)(const host_app_gateway *gateway);
};

/* Bytes of a response body. `release` is NULL for `static` bytes; else the
 * bytes are `owned` by the host once returned, and it calls
 * release(owner) exactly once, from any thread, when it is done with
 * them. */
typedef struct host_app_body {
    const uint8_t *ptr;
    size_t len;
    void (*release)(void *owner);
    void *owner;
} host_app_body;

/* A streamed response body: the host pulls chunks, then closes it, maybe on
 * another thread than the one that ran `call`, never two at once.
 *   next(state, chunk_out): 1 = *chunk_out holds the next chunk (its
 *     ownership as for host_app_body); 0 = the end; negative = the app
 *     failed (the response is cut short).
 *   close(state): exactly once, at the end or when the client goes away;
 *     the state is the app's to free. May be NULL. */
typedef struct host_app_stream {
    void *state_owned;
    int32_t (*next)(void *state, host_app_body *chunk_out);
    void (*close)(void *state);
} host_app_stream;

/* What the app returns; the host zeroes it and sets `size` before `call`. */
#define HOST_APP_RESPONSE_EMPTY 0u  /* no body (or the file body) */
#define HOST_APP_RESPONSE_BODY 1u   /* `body` */
#define HOST_APP_RESPONSE_STREAM 2u /* `stream` */
typedef struct host_app_response {
    uint32_t size;
    uint32_t kind; /* HOST_APP_RESPONSE_* */
    host_app_body body;
    host_app_stream stream;
} host_app_response;

/* The host's services, `static` (valid as long as the process). */
typedef struct host_app_services {
    uint32_t size;
    /* The most verbose level the host logs (0: none); skip building
     * messages above it. */
    int32_t max_level;
    /* Logs `message` at `level` (HOST_APP_LOG_*) under `target` (e.g. the
     * app's name), from any thread, any time after init. */
    void (*log)(int32_t level, host_app_str target_borrowed, host_app_str message_borrowed);
} host_app_services;

/* An app: the symbol `LIB:SYMBOL` names. `static`, and const. */
#define HOST_APP_MAGIC 0x70706168u /* "happ" */
typedef struct host_app {
    uint32_t size;  /* sizeof(host_app) */
    uint32_t magic; /* HOST_APP_MAGIC */
    /* Once per worker, before any call; NULL if there is nothing to do.
     * Non-zero: the app failed to start and the host refuses it (log why
     * through services->log first). */
    int32_t (*init)(const host_app_services *services_static);
    /* One request: read `request`, answer through `gateway`
     * (start_response, then write / read_body / send_file), return the body
     * in `response`. HOST_APP_OK, or a non-zero code: the app failed (a 500
     * if the head is not sent yet, else the response is cut short; the
     * host logs it, with last_error if a gateway call failed). */
    int32_t (*call)(const host_app_request *request_borrowed, const host_app_gateway *gateway_borrowed,
                    host_app_response *response_out);
} host_app;

/* Exports the version symbol: use once per library, at file scope. */
#if defined(__GNUC__) || defined(__clang__)
#define HOST_APP_VISIBLE __attribute__((visibility("default")))
#else
#define HOST_APP_VISIBLE
#endif
#ifdef __cplusplus
#define HOST_APP_EXPORT extern "C" HOST_APP_VISIBLE
#else
#define HOST_APP_EXPORT extern HOST_APP_VISIBLE
#endif
#define HOST_APP_INTERFACE()                                                                        \
    HOST_APP_EXPORT const host_app_version host_app_interface_version;                      \
    const host_app_version host_app_interface_version = {HOST_APP_VERSION_MAJOR, HOST_APP_VERSION_MINOR}

/* Exports an app under `symbol`, with `init` (or NULL) and `call`. */
#define HOST_APP_DEFINE(symbol, init_fn, call_fn)                                                   \
    HOST_APP_EXPORT const host_app symbol;                                                   \
    const host_app symbol = {sizeof(host_app), HOST_APP_MAGIC, (init_fn), (call_fn)}

#ifdef __cplusplus
}
#endif

#endif /* HOST_APP_H */
