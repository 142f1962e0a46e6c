//! The front door's demo keeps its promises: under `make run`'s
//! configuration (`demo.toml`), every link on `html/index.html` answers
//! what the page says it does, and a missing page is the site's 404 page
//! with status 404.

mod common;

use common::server::{Response, Server};
use common::{build_dir, repo_root};

/// The `href`s of a page, in order.
fn links(page: &str) -> Vec<String> {
    page.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(link, _)| link.to_owned()))
        .collect()
}

/// Whether `text` is a time as Python's `time.ctime()` writes it, e.g.
/// `Sun Jun  7 23:07:04 2015`.
fn is_ctime(text: &str) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    words.len() == 5
        && words[0].len() == 3
        && words[1].len() == 3
        && words[2].parse::<u32>().is_ok_and(|day| (1..=31).contains(&day))
        && words[3].len() == 8
        && words[3].bytes().filter(|b| *b == b':').count() == 2
        && words[4].parse::<u32>().is_ok_and(|year| year >= 2024)
}

/// What the page says each link leads to, checked against the answer.
fn check(link: &str, response: &Response, not_found_page: &str) -> Result<(), String> {
    let text = response.text();
    let content_type = response.header("content-type").unwrap_or_default().to_owned();
    let ok = match link {
        "/style.css" => response.status == 200 && content_type.starts_with("text/css"),
        // "a chat page talking over a WebSocket to an ordinary axum app"
        "/chat.html" => response.status == 200 && text.contains("new WebSocket(") && text.contains("/chat/ws"),
        // "the server's local time, like Python's time.ctime()"
        "/ctime.py" => response.status == 200 && is_ctime(&text),
        // "which HTTP method the request used"
        "/hello.py" => response.status == 200 && text == "The request method was GET",
        // "a page rendered from templates/index.html" (and center.html)
        "/index.py" => response.status == 200 && text.contains("本月详细信息分析如下..."),
        "/center.py" => response.status == 200 && text.contains("数据来源于数据库..."),
        // "welcome lines stamped with the time"
        "/login.py" | "/register.py" | "/profile.py" => {
            let stamp = text.rsplit("time:").next().unwrap_or_default();
            response.status == 200 && text.contains("welcome") && is_ctime(stamp)
        }
        // "a missing page"
        "/no-such-page" => response.status == 404 && text == not_found_page,
        other => {
            return Err(format!(
                "the test does not know what {other} should answer: add it here"
            ))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{link}: {} {content_type:?} {:?}",
            response.status,
            text.chars().take(200).collect::<String>()
        ))
    }
}

#[test]
fn every_link_on_the_demo_page_answers_what_the_page_says() {
    let root = repo_root();
    let page = std::fs::read_to_string(root.join("html/index.html")).unwrap();
    let not_found_page = std::fs::read_to_string(root.join("html/404.html")).unwrap();
    let server = Server::builder()
        .args(["--config", "demo.toml", "--plugin-dir"])
        .arg(build_dir())
        .start();
    let front = server.get("/");
    assert_eq!(front.status, 200);
    assert_eq!(front.text(), page, "/ is html/index.html");
    let links = links(&page);
    for expected in ["/ctime.py", "/hello.py", "/index.py", "/login.py", "/no-such-page"] {
        assert!(
            links.iter().any(|l| l == expected),
            "the page no longer links {expected}"
        );
    }
    let failures: Vec<String> = links
        .iter()
        .filter_map(|link| check(link, &server.get(link), &not_found_page).err())
        .collect();
    assert!(failures.is_empty(), "{failures:#?}\n{}", server.log());
    // The chat page's app answers where the page expects it.
    let status = server.get("/chat/api/status");
    assert_eq!(status.status, 200, "{}", status.text());
    // The script the page loads is there too.
    assert_eq!(server.get("/script.js").status, 200);
}
