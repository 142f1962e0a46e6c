//! An async request's environ, owning its text (it outlives the connection
//! task's borrow of the request).

use plugin_api::host::{Header, RequestVars};

use crate::header_list::HeaderList;

/// A request's environ owning its text.
#[derive(Debug)]
pub struct OwnedEnviron {
    /// `REQUEST_METHOD` … `wsgi.url_scheme`, in [`RequestVars`]' order.
    vars: HeaderList,
    flags: [bool; 3],
    headers: HeaderList,
}

impl OwnedEnviron {
    /// A copy of `vars` and `headers`.
    pub fn copy_of(vars: &RequestVars<'_>, headers: &[Header<'_>]) -> OwnedEnviron {
        let fixed = [
            vars.method,
            vars.script_name,
            vars.path_info,
            vars.query_string,
            vars.server_name,
            vars.server_port,
            vars.server_protocol,
            vars.remote_addr,
            vars.remote_port,
            vars.url_scheme,
        ];
        OwnedEnviron {
            vars: HeaderList::copy_of(fixed.iter().map(|value| ("", *value))),
            flags: [vars.multithread, vars.multiprocess, vars.run_once],
            headers: HeaderList::copy_of(headers.iter().map(|h| (h.name(), h.value()))),
        }
    }

    /// PEP 3333's variables.
    pub fn vars(&self) -> RequestVars<'_> {
        let value = |i: usize| self.vars.pairs()[i].value();
        RequestVars {
            method: value(0),
            script_name: value(1),
            path_info: value(2),
            query_string: value(3),
            server_name: value(4),
            server_port: value(5),
            server_protocol: value(6),
            remote_addr: value(7),
            remote_port: value(8),
            url_scheme: value(9),
            multithread: self.flags[0],
            multiprocess: self.flags[1],
            run_once: self.flags[2],
        }
    }

    /// The request headers.
    pub fn headers(&self) -> &[Header<'_>] {
        self.headers.pairs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_gives_back_what_it_was_made_of_after_a_move() {
        let headers = [Header::new("host", "example.org"), Header::new("x-a", "1, 2")];
        let vars = RequestVars {
            method: "POST",
            path_info: "/a b",
            query_string: "q=1",
            url_scheme: "https",
            multithread: true,
            ..RequestVars::default()
        };
        let owned = Box::new(OwnedEnviron::copy_of(&vars, &headers));
        let moved = *owned;
        let back = moved.vars();
        assert_eq!(
            (back.method, back.path_info, back.query_string),
            ("POST", "/a b", "q=1")
        );
        assert_eq!(
            (back.url_scheme, back.script_name, back.multithread),
            ("https", "", true)
        );
        let pairs: Vec<(&str, &str)> = moved.headers().iter().map(|h| (h.name(), h.value())).collect();
        assert_eq!(pairs, [("host", "example.org"), ("x-a", "1, 2")]);
    }
}
