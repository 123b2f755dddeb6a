//! What the runner owns in the proxy's JSON config, as pure changes of its
//! `apps` object: the `slipway` HTTPS server's routes whose `@id` starts with
//! `slipway-` (other routes in it are kept, before the catch-all `404`), the
//! `slipway-http` server on the HTTP port (routes with `tls: off`, and the
//! same catch-all), one `slipway-listen-<port>`
//! server per `listen` port, one TLS automation policy per route with
//! `tls: internal`, and the local CA's `install_trust: false`.

use domain::workflow::RouteTls;
use serde_json::{Map, Value, json};

/// The prefix of every `@id` the runner owns.
pub const OWNED: &str = "slipway-";
const MAIN_SERVER: &str = "slipway";
const PLAIN_SERVER: &str = "slipway-http";
const CATCH_ALL: &str = "slipway-404";
const LISTEN_SUFFIX: &str = "@listen";

/// The proxy's public ports (`SLIPWAY_PROXY_HTTP_PORT`, `..._HTTPS_PORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub http: u16,
    pub https: u16,
}

/// One environment's route as the proxy serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// `<workflow>/<environment>`: names its routes.
    pub key: String,
    pub domains: Vec<String>,
    pub tls: RouteTls,
    pub listen: Option<u16>,
    /// `host:port` dial addresses; the first gets the traffic, the next ones
    /// answer when it does not.
    pub upstreams: Vec<String>,
}

fn route_id(key: &str) -> String {
    format!("{OWNED}{key}")
}

fn tls_policy_id(key: &str) -> String {
    format!("{OWNED}tls-{key}")
}

/// Puts `served`'s routes in `apps`, replacing what it had.
pub fn put(apps: &mut Value, ports: Ports, served: &Served) {
    remove(apps, &served.key);
    let apps = object(apps);
    let http = object(apps.entry("http").or_insert_with(|| json!({})));
    http.insert("http_port".to_owned(), json!(ports.http));
    http.insert("https_port".to_owned(), json!(ports.https));
    let servers = object(http.entry("servers").or_insert_with(|| json!({})));
    let id = route_id(&served.key);
    if !served.domains.is_empty() {
        let route = json!({
            "@id": id,
            "match": [{"host": served.domains}],
            "handle": [handler(&served.upstreams)],
            "terminal": true,
        });
        let name = match served.tls {
            RouteTls::Off => PLAIN_SERVER,
            RouteTls::Auto | RouteTls::Internal => MAIN_SERVER,
        };
        // Both servers exist once a domain is routed: the plain one answers
        // a host no route serves with a 404 too (the proxy puts its
        // redirects to HTTPS for the other domains in front of its routes).
        for (server_name, port) in [(MAIN_SERVER, ports.https), (PLAIN_SERVER, ports.http)] {
            let server = object(servers.entry(server_name).or_insert_with(
                || json!({"listen": [format!(":{port}")], "protocols": ["h1", "h2"], "routes": []}),
            ));
            let routes = array(server.entry("routes").or_insert_with(|| json!([])));
            if server_name == name {
                routes.push(route.clone());
            }
            order(routes);
        }
    }
    if let Some(port) = served.listen {
        servers.insert(
            listen_server(port),
            json!({
                "listen": [format!(":{port}")],
                "protocols": ["h1", "h2"],
                "automatic_https": {"disable": true},
                "routes": [{
                    "@id": format!("{id}{LISTEN_SUFFIX}"),
                    "handle": [handler(&served.upstreams)],
                    "terminal": true,
                }],
            }),
        );
    }
    if served.tls == RouteTls::Internal && !served.domains.is_empty() {
        let tls = object(apps.entry("tls").or_insert_with(|| json!({})));
        let automation = object(tls.entry("automation").or_insert_with(|| json!({})));
        let policies = array(automation.entry("policies").or_insert_with(|| json!([])));
        // Before any catch-all policy of someone else's.
        policies.insert(
            0,
            json!({
                "@id": tls_policy_id(&served.key),
                "subjects": served.domains,
                "issuers": [{"module": "internal"}],
            }),
        );
        // The proxy's own CA stays out of the host's trust store: whoever
        // needs it gets its root file.
        let pki = object(apps.entry("pki").or_insert_with(|| json!({})));
        let cas = object(
            pki.entry("certificate_authorities")
                .or_insert_with(|| json!({})),
        );
        let local = object(cas.entry("local").or_insert_with(|| json!({})));
        local.insert("install_trust".to_owned(), json!(false));
    }
}

/// Removes every route of `key` (and a `listen` server left empty).
pub fn remove(apps: &mut Value, key: &str) {
    let id = route_id(key);
    let listen_id = format!("{id}{LISTEN_SUFFIX}");
    if let Some(servers) = apps
        .pointer_mut("/http/servers")
        .and_then(Value::as_object_mut)
    {
        let mut emptied = Vec::new();
        for (name, server) in servers.iter_mut() {
            if let Some(routes) = server.get_mut("routes").and_then(Value::as_array_mut) {
                routes.retain(|r| {
                    let rid = r.get("@id").and_then(Value::as_str);
                    rid != Some(id.as_str()) && rid != Some(listen_id.as_str())
                });
                if name.starts_with("slipway-listen-") && routes.is_empty() {
                    emptied.push(name.clone());
                }
            }
        }
        for name in emptied {
            servers.remove(&name);
        }
    }
    let policy = tls_policy_id(key);
    if let Some(policies) = apps
        .pointer_mut("/tls/automation/policies")
        .and_then(Value::as_array_mut)
    {
        policies.retain(|p| p.get("@id").and_then(Value::as_str) != Some(policy.as_str()));
    }
}

/// The keys whose routes `apps` has, and each one's upstreams.
pub fn served(apps: &Value) -> Vec<(String, Vec<String>)> {
    let mut found: Vec<(String, Vec<String>)> = Vec::new();
    let Some(servers) = apps.pointer("/http/servers").and_then(Value::as_object) else {
        return found;
    };
    for server in servers.values() {
        for route in server
            .get("routes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(key) = route
                .get("@id")
                .and_then(Value::as_str)
                .and_then(|id| id.strip_prefix(OWNED))
                .map(|k| k.strip_suffix(LISTEN_SUFFIX).unwrap_or(k))
            else {
                continue;
            };
            if key == "404" || found.iter().any(|(k, _)| k == key) {
                continue;
            }
            let upstreams = route
                .pointer("/handle/0/upstreams")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|u| u.get("dial").and_then(Value::as_str).map(str::to_owned))
                .collect();
            found.push((key.to_owned(), upstreams));
        }
    }
    found
}

fn listen_server(port: u16) -> String {
    format!("{OWNED}listen-{port}")
}

/// The reverse proxy to `upstreams`, in order: the first answers while it
/// can; a request it fails is retried on the next at once (passive health
/// checks mark it down meanwhile), so a switch or a dying candidate loses no
/// request that can be retried.
fn handler(upstreams: &[String]) -> Value {
    json!({
        "handler": "reverse_proxy",
        "upstreams": upstreams.iter().map(|u| json!({"dial": u})).collect::<Vec<_>>(),
        "load_balancing": {
            "selection_policy": {"policy": "first"},
            "retries": 2,
        },
        "health_checks": {
            "passive": {"fail_duration": "5s", "max_fails": 1},
        },
    })
}

/// Owned routes first (exact host names before wildcards), then the others
/// as they were, then the catch-all `404`: a host no route serves is not
/// found rather than an empty `200`.
fn order(routes: &mut Vec<Value>) {
    let id_of = |r: &Value| r.get("@id").and_then(Value::as_str).map(str::to_owned);
    routes.retain(|r| id_of(r).as_deref() != Some(CATCH_ALL));
    let (mut owned, others): (Vec<Value>, Vec<Value>) = routes
        .drain(..)
        .partition(|r| id_of(r).is_some_and(|id| id.starts_with(OWNED)));
    owned.sort_by_key(|r| {
        let wildcard = r
            .pointer("/match/0/host")
            .and_then(Value::as_array)
            .is_some_and(|hosts| {
                hosts
                    .iter()
                    .any(|h| h.as_str().is_some_and(|h| h.starts_with("*.")))
            });
        (wildcard, id_of(r))
    });
    routes.extend(owned);
    routes.extend(others);
    routes.push(json!({
        "@id": CATCH_ALL,
        "handle": [{"handler": "static_response", "status_code": 404}],
        "terminal": true,
    }));
}

fn object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = json!({});
    }
    value.as_object_mut().expect("an object")
}

fn array(value: &mut Value) -> &mut Vec<Value> {
    if !value.is_array() {
        *value = json!([]);
    }
    value.as_array_mut().expect("an array")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: Ports = Ports {
        http: 8080,
        https: 8443,
    };

    fn served(key: &str, domains: &[&str], tls: RouteTls, listen: Option<u16>) -> Served {
        Served {
            key: key.to_owned(),
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            tls,
            listen,
            upstreams: vec!["127.0.0.1:3001".to_owned(), "127.0.0.1:3000".to_owned()],
        }
    }

    /// The `@id`s of a server's routes, in order.
    fn route_ids(server: &Value) -> Vec<&str> {
        server["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["@id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn puts_replaces_and_removes_only_its_own() {
        let mut apps = json!({"http": {"servers": {"slipway": {"listen": [":8443"], "routes": [
            {"@id": "gateway", "match": [{"host": ["ci.example"]}], "handle": [], "terminal": true}
        ]}, "other": {"listen": [":9000"], "routes": []}}}});
        put(
            &mut apps,
            PORTS,
            &served("shop/prod", &["*.shop.example"], RouteTls::Auto, None),
        );
        put(
            &mut apps,
            PORTS,
            &served(
                "hello/dev",
                &["hello.example"],
                RouteTls::Internal,
                Some(18090),
            ),
        );
        let ids = route_ids(&apps["http"]["servers"]["slipway"]);
        assert_eq!(
            ids,
            [
                "slipway-hello/dev",
                "slipway-shop/prod",
                "gateway",
                "slipway-404"
            ]
        );
        assert_eq!(apps["http"]["https_port"], 8443);
        let listen = &apps["http"]["servers"]["slipway-listen-18090"];
        assert_eq!(listen["listen"], json!([":18090"]));
        assert_eq!(
            listen["routes"][0]["handle"][0]["upstreams"],
            json!([{"dial": "127.0.0.1:3001"}, {"dial": "127.0.0.1:3000"}])
        );
        assert_eq!(
            apps["tls"]["automation"]["policies"][0]["subjects"],
            json!(["hello.example"])
        );
        assert_eq!(
            apps["pki"]["certificate_authorities"]["local"]["install_trust"],
            false
        );

        // Switched to one upstream: replaced in place, nothing doubled.
        let mut one = served(
            "hello/dev",
            &["hello.example"],
            RouteTls::Internal,
            Some(18090),
        );
        one.upstreams.truncate(1);
        put(&mut apps, PORTS, &one);
        let mut found = super::served(&apps);
        found.sort();
        assert_eq!(
            found,
            [
                ("hello/dev".to_owned(), vec!["127.0.0.1:3001".to_owned()]),
                (
                    "shop/prod".to_owned(),
                    vec!["127.0.0.1:3001".to_owned(), "127.0.0.1:3000".to_owned()]
                ),
            ]
        );
        assert_eq!(
            apps["tls"]["automation"]["policies"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        remove(&mut apps, "hello/dev");
        assert!(
            apps["http"]["servers"]
                .get("slipway-listen-18090")
                .is_none()
        );
        assert!(apps["http"]["servers"].get("other").is_some());
        assert_eq!(apps["tls"]["automation"]["policies"], json!([]));
        let ids = route_ids(&apps["http"]["servers"]["slipway"]);
        assert_eq!(ids, ["slipway-shop/prod", "gateway", "slipway-404"]);
    }

    #[test]
    fn plain_http_routes_and_an_empty_config() {
        let mut apps = Value::Null;
        put(
            &mut apps,
            PORTS,
            &served("a/b", &["a.example"], RouteTls::Off, None),
        );
        let server = &apps["http"]["servers"]["slipway-http"];
        assert_eq!(server["listen"], json!([":8080"]));
        let ids = route_ids(server);
        assert_eq!(ids, ["slipway-a/b", "slipway-404"]);
        assert_eq!(
            apps["http"]["servers"]["slipway"]["listen"],
            json!([":8443"])
        );
        assert!(apps.get("tls").is_none());
    }
}
