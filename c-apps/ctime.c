/* ctime: the seeds' ctime.py in C, the first "dynamic" page:
 *
 *     def application(env, dealHeaders):
 *         dealHeaders("200 OK", [("Content-type", "text/plain")])
 *         return time.ctime()
 *
 * The body is exactly what Python's time.ctime() returns, e.g.
 * "Sun Jun  7 23:07:04 2015" (no trailing newline).
 *
 * Build: cc -shared -fPIC -O2 -I plugin-api/c -o libctime_c.so c-apps/ctime.c
 * Serve: host ./libctime_c.so:application
 */
#define _POSIX_C_SOURCE 200809L /* localtime_r */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host_app.h"

HOST_APP_INTERFACE();

static host_app_str str(const char *text) {
    host_app_str s = {text, strlen(text)};
    return s;
}

static void release(void *owner) { free(owner); }

static int32_t call(const host_app_request *request, const host_app_gateway *gateway,
                    host_app_response *response) {
    (void)request;
    const host_app_header headers[] = {{str("Content-type"), str("text/plain")}};
    int32_t status = gateway->start_response(gateway, str("200 OK"), headers, 1, (host_app_str){NULL, 0});
    if (status != HOST_APP_OK) return status;

    time_t now = time(NULL);
    struct tm local;
    char *body = malloc(32);
    if (body == NULL || localtime_r(&now, &local) == NULL) {
        free(body);
        return HOST_APP_ERR_REFUSED;
    }
    /* time.ctime(): the day of the month space-padded to two characters. */
    size_t len = strftime(body, 32, "%a %b %e %H:%M:%S %Y", &local);
    response->kind = HOST_APP_RESPONSE_BODY;
    response->body = (host_app_body){(const uint8_t *)body, len, release, body};
    return HOST_APP_OK;
}

HOST_APP_DEFINE(application, NULL, call);
