/* hello: the seeds' first WSGI app in C. It says which HTTP method the
 * request used, with a Content-Length, like plugins/hello:
 *
 *     def application(environ, start_response):
 *         response_body = 'The request method was %s' % environ['REQUEST_METHOD']
 *         ...
 *
 * Build: cc -shared -fPIC -O2 -I plugin-api/c -o libhello_c.so c-apps/hello.c
 * Serve: host ./libhello_c.so:application
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host_app.h"

HOST_APP_INTERFACE();

static host_app_str str(const char *text) {
    host_app_str s = {text, strlen(text)};
    return s;
}

static void release(void *owner) { free(owner); }

static int32_t call(const host_app_request *request, const host_app_gateway *gateway,
                    host_app_response *response) {
    static const char prefix[] = "The request method was ";
    size_t len = sizeof prefix - 1 + request->method.len;
    char *body = malloc(len);
    if (body == NULL) return HOST_APP_ERR_REFUSED;
    memcpy(body, prefix, sizeof prefix - 1);
    memcpy(body + sizeof prefix - 1, request->method.ptr, request->method.len);

    char length[24];
    snprintf(length, sizeof length, "%zu", len);
    const host_app_header headers[] = {
        {str("Content-Type"), str("text/plain")},
        {str("Content-Length"), str(length)},
    };
    int32_t status = gateway->start_response(gateway, str("200 OK"), headers, 2, (host_app_str){NULL, 0});
    if (status != HOST_APP_OK) {
        free(body);
        return status;
    }
    response->kind = HOST_APP_RESPONSE_BODY;
    response->body = (host_app_body){(const uint8_t *)body, len, release, body};
    return HOST_APP_OK;
}

HOST_APP_DEFINE(application, NULL, call);
