/* The C twin of bench_apps' `hello` (src/lib.rs): the same status, headers
 * and static body, through the C interface, so the two cost the same work
 * on the app's side and the difference is the interface's.
 * Built by `make c-apps` into target/c-apps/libbench_hello_c.so. */
#include "host_app.h"

HOST_APP_INTERFACE();

static int32_t hello(const host_app_request *request, const host_app_gateway *gateway, host_app_response *response) {
    (void)request;
    static const host_app_header headers[] = {
        {{"Content-Type", 12}, {"text/plain", 10}},
        {{"Content-Length", 14}, {"12", 2}},
    };
    int32_t status = gateway->start_response(gateway, (host_app_str){"200 OK", 6}, headers, 2, (host_app_str){NULL, 0});
    if (status != HOST_APP_OK) return status;
    response->kind = HOST_APP_RESPONSE_BODY;
    response->body = (host_app_body){(const uint8_t *)"Hello world!", 12, NULL, NULL};
    return HOST_APP_OK;
}

HOST_APP_DEFINE(hello_app, NULL, hello);
