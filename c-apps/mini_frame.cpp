/* mini_frame: the seeds' tiny framework (the blog posts this project grew
 * from build it in Python) in C++17, a demo of host_app.h from C++. A route
 * table maps PATH_INFO to handlers (lambdas) that build pages
 * as the seed's index() and center() do: a template with "{%content%}"
 * replaced by a line of text (the template is inline here; the Rust port,
 * plugins/mini_frame, reads html/templates/ and has more routes):
 *   /index.py, /center.py  200, text/html;charset=utf-8
 *   anything else          404, text/plain, "not found you page...."
 * The body is an owned heap std::string, deleted by the host's release.
 * Build: c++ -std=c++17 -shared -fPIC -O2 -I plugin-api/c -o libmini_frame_cpp.so c-apps/mini_frame.cpp
 * Serve: host ./libmini_frame_cpp.so:application
 */
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "host_app.h"

namespace {
std::string render(std::string_view content) {
    std::string page = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>mini_frame</title></head>"
                       "<body><p>{%content%}</p></body></html>";
    constexpr std::string_view placeholder = "{%content%}";
    for (auto at = page.find(placeholder); at != std::string::npos; at = page.find(placeholder, at + content.size()))
        page.replace(at, placeholder.size(), content);
    return page;
}

const std::unordered_map<std::string_view, std::string (*)()> routes = {
    {"/index.py", [] { return render("本月详细信息分析如下..."); }},
    {"/center.py", [] { return render("数据来源于数据库..."); }},
};

host_app_str str(std::string_view text) { return {text.data(), text.size()}; }

int32_t call(const host_app_request *request, const host_app_gateway *gateway, host_app_response *response) noexcept {
    try { // no exception (std::bad_alloc) may cross into the host
        const auto route = routes.find(std::string_view(request->path_info.ptr, request->path_info.len));
        const bool found = route != routes.end();
        auto body = std::make_unique<std::string>(found ? route->second() : "not found you page....");
        const host_app_header headers[] = {
            {str("Content-Type"), str(found ? "text/html;charset=utf-8" : "text/plain;charset=utf-8")}};
        const int32_t status =
            gateway->start_response(gateway, str(found ? "200 OK" : "404 Not Found"), headers, 1, {});
        if (status != HOST_APP_OK) return status;
        response->kind = HOST_APP_RESPONSE_BODY;
        response->body = {reinterpret_cast<const uint8_t *>(body->data()), body->size(),
                          [](void *owner) { delete static_cast<std::string *>(owner); }, body.release()};
        return HOST_APP_OK;
    } catch (...) {
        return HOST_APP_ERR_REFUSED;
    }
}
} // namespace

HOST_APP_INTERFACE();
HOST_APP_DEFINE(application, nullptr, call);
