//! Routed environments across workflows (edge.md): where an environment is
//! served, and the domains and `listen` ports only one environment of the
//! whole server may use.

use super::{Route, RouteTls, SpecError, Workflow};

impl Route {
    /// Where the environment is served: `https://<first domain>/`
    /// (`http://` with `tls: off`), else `http://<host>:<listen>/` on the
    /// host its version runs on.
    pub fn url(&self, host: &str) -> String {
        match (self.domains.first(), self.listen) {
            (Some(domain), _) => {
                let scheme = match self.tls {
                    RouteTls::Off => "http",
                    RouteTls::Auto | RouteTls::Internal => "https",
                };
                format!("{scheme}://{domain}/")
            }
            (None, Some(port)) if host.contains(':') => format!("http://[{host}]:{port}/"),
            (None, Some(port)) => format!("http://{host}:{port}/"),
            // The parser refuses a route with neither.
            (None, None) => String::new(),
        }
    }
}

/// The first domain or `listen` port of `spec` that an environment of one
/// of `others` (the server's other workflows) already uses, as the error
/// that names where `spec` wrote it and who uses it.
pub fn claimed_elsewhere<'a>(
    spec: &Workflow,
    others: impl IntoIterator<Item = &'a Workflow>,
) -> Option<SpecError> {
    let mine: Vec<_> = spec
        .deploy
        .iter()
        .filter_map(|d| d.route.as_ref())
        .flat_map(|r| &r.claims)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let theirs: Vec<_> = others
        .into_iter()
        .flat_map(|w| w.deploy.iter().map(move |d| (w, d)))
        .filter_map(|(w, d)| d.route.as_ref().map(|r| (w, d, r)))
        .flat_map(|(w, d, r)| r.claims.iter().map(move |(claim, _)| (claim, w, d)))
        .collect();
    mine.into_iter().find_map(|(claim, spot)| {
        theirs
            .iter()
            .find(|(used, _, _)| *used == claim)
            .map(|(_, w, d)| {
                spot.error(format!(
                    "{claim} is already used by workflow \"{}\", environment \"{}\"",
                    w.name, d.environment
                ))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    fn workflow(name: &str, deploy: &str) -> Workflow {
        let yaml = format!(
            "name: {name}\nrepo: https://example.com/{name}.git\nsteps:\n  - name: t\n    run: 'true'\ndeploy:\n{deploy}"
        );
        parse(&yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn env(name: &str, route: &str) -> String {
        format!(
            "  - environment: {name}\n    route: {route}\n    target: {{container: {{name: {name}}}}}\n"
        )
    }

    #[test]
    fn urls_by_domain_tls_and_listen_port() {
        let cases = [
            (
                "{domains: [a.example, b.example], listen: 8001, port: 80}",
                "h",
                "https://a.example/",
            ),
            (
                "{domains: [a.example], tls: internal, port: 80}",
                "h",
                "https://a.example/",
            ),
            (
                "{domains: [a.example], tls: off, port: 80}",
                "h",
                "http://a.example/",
            ),
            ("{listen: 18090, port: 80}", "box-1", "http://box-1:18090/"),
            ("{listen: 18090, port: 80}", "::1", "http://[::1]:18090/"),
        ];
        for (route, host, url) in cases {
            let w = workflow("w", &env("e", route));
            let route = w.deploy[0].route.as_ref().expect("routed");
            assert_eq!(route.url(host), url, "{route:?}");
        }
    }

    #[test]
    fn a_domain_or_port_of_another_workflow_is_named_where_it_was_written() {
        let shop = workflow(
            "shop",
            &(env("dev", "{listen: 18091, port: 80}")
                + &env(
                    "prod",
                    "{domains: [hello.example], listen: 18090, port: 80}",
                )),
        );
        let blog = workflow("blog", &env("www", "{domains: [blog.example], port: 80}"));
        let cases = [
            (
                env("live", "{domains: [new.example, hello.example], port: 80}"),
                Some(
                    r#"deploy[0].route.domains[1]: domain hello.example is already used by workflow "shop", environment "prod" at line 8, column 36"#,
                ),
            ),
            (
                env("live", "{listen: 18091, port: 80}"),
                Some(
                    r#"deploy[0].route.listen: listen port 18091 is already used by workflow "shop", environment "dev" at line 8, column 21"#,
                ),
            ),
            (
                env(
                    "live",
                    "{domains: [other.example], listen: 18092, port: 80}",
                ),
                None,
            ),
            // The wildcard is another name than the host it covers.
            (env("live", "{domains: [\"*.example\"], port: 80}"), None),
        ];
        for (deploy, expected) in cases {
            let mine = workflow("mine", &deploy);
            let error = claimed_elsewhere(&mine, [&blog, &shop]).map(|e| e.to_string());
            assert_eq!(error.as_deref(), expected, "{deploy}");
        }
        let unrouted = workflow(
            "plain",
            "  - environment: dev\n    target: {container: {name: x}}\n",
        );
        assert_eq!(claimed_elsewhere(&unrouted, [&shop]), None);
    }
}
