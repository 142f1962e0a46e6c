/* The C globals of the Go echo app (see echo.go): the interface version and
 * the `application` descriptor. They are definitions, and the preamble of a
 * Go file with //export may hold only declarations, so they live here. */
#include "_cgo_export.h" /* host_app.h, and goCall as cgo declares it */

HOST_APP_INTERFACE();

/* goCall's parameters lose their const in Go: restore it for the host. */
static int32_t call(const host_app_request *request, const host_app_gateway *gateway, host_app_response *response) {
    return goCall((host_app_request *)request, (host_app_gateway *)gateway, response);
}

HOST_APP_DEFINE(application, NULL, call);
