//! A second host on this machine: a network namespace joined to the host by
//! a veth pair, each end with its own address. A process started in it
//! (`ip netns exec`) reaches the host only over the veth, as a runner on
//! another machine would reach Slipway over the network.
//!
//! The test services listen on 127.0.0.1, which is not reachable from the
//! namespace; [`Forward`] listens on the host's veth address and passes
//! connections on to them, as a host's public interface would.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};

use tokio::net::{TcpListener, TcpStream};

/// A network namespace with a veth pair; removed (with the pair) on drop.
pub struct NetNs {
    pub name: String,
    /// The host's end of the veth.
    pub host_ip: Ipv4Addr,
    /// The namespace's end: the second host's own address.
    pub ns_ip: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ip runs (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    /// Creates the namespace and the veth pair in a /30 of 10.213.0.0/16
    /// picked at random; needs root.
    pub fn create() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let short = &id[..8];
        let name = format!("slipway-{short}");
        // Interface names are at most 15 characters.
        let (host_if, ns_if) = (format!("sw{short}h"), format!("sw{short}n"));
        let bytes = uuid::Uuid::new_v4().into_bytes();
        let (third, fourth) = (bytes[0], bytes[1] & 0xfc);
        let host_ip = Ipv4Addr::new(10, 213, third, fourth | 1);
        let ns_ip = Ipv4Addr::new(10, 213, third, fourth | 2);
        ip(&["netns", "add", &name]);
        let ns = Self {
            name,
            host_ip,
            ns_ip,
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ns.exec_ip(&["addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        ns.exec_ip(&["link", "set", &ns_if, "up"]);
        ns.exec_ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn exec_ip(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Passes TCP connections from `listen` on to `target` until dropped.
pub struct Forward {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Forward {
    /// Listens on `ip` (port picked by the system) for `target`.
    pub async fn start(ip: Ipv4Addr, target: SocketAddr) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.expect("forward binds");
        let addr = listener.local_addr().expect("bound");
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}
