// echo: a Go app for the host, through host_app.h. GET answers a greeting
// naming the path; POST echoes the request body back (up to 1 MiB: 413
// past that). cgo cannot call C function pointers, so the preamble wraps
// the gateway's; app.c holds the C globals the host looks up (the version
// and the `application` descriptor, whose call is goCall below).
//
// A Go library brings its own runtime, and a process runs only one: a
// worker holds one Go library at most (the host refuses a second one, so
// build all of a host's Go apps into one library).
//
// Build: cd c-apps/go-echo && go build -buildmode=c-shared -o libecho_go.so .
// (the #cgo line below finds host_app.h; CGO_CFLAGS="-I<repo>/plugin-api/c" does too)
// Serve: host ./c-apps/go-echo/libecho_go.so:application
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../../plugin-api/c
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "host_app.h"

static inline int32_t start(const host_app_gateway *g, bool too_large, size_t length) {
	char text[24];
	snprintf(text, sizeof text, "%zu", length);
	host_app_header headers[] = {
		{{"Content-Type", 12}, {"text/plain; charset=utf-8", 25}},
		{{"Content-Length", 14}, {text, strlen(text)}},
	};
	host_app_str status = {too_large ? "413 Content Too Large" : "200 OK", too_large ? 21 : 6}, none = {NULL, 0};
	return g->start_response(g, status, headers, 2, none);
}
static inline int64_t read_body(const host_app_gateway *g, void *buf, size_t len) { return g->read_body(g, buf, len); }
static inline void set_body(host_app_response *r, void *owned, size_t len) {
	r->kind = HOST_APP_RESPONSE_BODY;
	r->body = (host_app_body){owned, len, free, owned};
}
*/
import "C"

import "unsafe"

const maxBody = 1 << 20 // the largest body echoed back

//export goCall
func goCall(req *C.host_app_request, gw *C.host_app_gateway, resp *C.host_app_response) C.int32_t {
	path := C.GoStringN(req.path_info.ptr, C.int(req.path_info.len))
	body, tooLarge := []byte("Hello from Go! You asked for "+path+"\n"), false
	if C.GoStringN(req.method.ptr, C.int(req.method.len)) == "POST" {
		body = nil
		buf := make([]byte, 64<<10)
		for len(body) <= maxBody {
			n := C.read_body(gw, unsafe.Pointer(&buf[0]), C.size_t(len(buf))) // Go memory, only during the call
			if n < 0 {
				return C.int32_t(n) // a limit broke or the client left: the host logs last_error
			} else if n == 0 {
				break
			}
			body = append(body, buf[:n]...)
		}
		if tooLarge = len(body) > maxBody; tooLarge {
			body = []byte("request body over 1 MiB\n")
		}
	}
	if code := C.start(gw, C.bool(tooLarge), C.size_t(len(body))); code != C.HOST_APP_OK {
		return code
	}
	if len(body) > 0 { // C memory (C.CBytes), which the host may hold after the call, and frees with free
		C.set_body(resp, C.CBytes(body), C.size_t(len(body)))
	}
	return C.HOST_APP_OK
}

func main() {}
