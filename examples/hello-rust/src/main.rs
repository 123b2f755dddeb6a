//! Slipway's second example service: greets on `/` and reports its health
//! as JSON on `/health`.

use serde::Serialize;
use tiny_http::{Header, Response, Server};

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    version: &'a str,
}

fn version() -> &'static str {
    option_env!("SLIPWAY_COMMIT_SHORT").unwrap_or("dev")
}

fn answer(path: &str) -> (String, &'static str) {
    match path {
        "/health" => {
            let health = Health {
                status: "ok",
                version: version(),
            };
            let body = serde_json::to_string(&health).unwrap_or_default();
            (body + "\n", "application/json")
        }
        _ => (
            format!("hello from hello-rust {}\n", version()),
            "text/plain",
        ),
    }
}

fn main() {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "0.0.0.0:8080".to_owned());
    let server = match Server::http(&addr) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("hello-rust: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("hello-rust {} listening on {addr}", version());
    for request in server.incoming_requests() {
        let (body, kind) = answer(request.url());
        let mut response = Response::from_string(body);
        if let Ok(header) = Header::from_bytes("Content-Type", kind) {
            response = response.with_header(header);
        }
        let _ = request.respond(response);
    }
}

#[cfg(test)]
mod tests {
    use super::answer;

    #[test]
    fn health_is_json() {
        let (body, kind) = answer("/health");
        assert_eq!(kind, "application/json");
        assert!(body.starts_with("{\"status\":\"ok\""), "{body}");
    }

    #[test]
    fn greets() {
        assert!(answer("/").0.contains(" from hello-rust "));
    }
}
