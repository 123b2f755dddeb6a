//! `cargo xtask images [--debug]`: the Slipway image, built without pulling
//! anything. The binaries are built with cargo, then a `FROM scratch` image
//! is assembled around them with every shared library `ldd` names, the
//! dynamic loader, a static busybox as `/bin/sh`, Debian's git (and its
//! `git-upload-pack`, which `file://` clones spawn), CA certificates and a
//! non-root user. `deploy/Dockerfile` builds the same layout for those whose
//! engine can pull; deploy/README.md describes both.
//!
//! The context's digest is kept as a label: a second run whose binaries and
//! libraries did not change finds the image up to date and builds nothing.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::sys::{self, Need};

/// The image's repository: one image for every service.
pub const REPOSITORY: &str = "slipway/slipway";
/// The workspace version, the image's release tag.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The user the services run as.
pub const UID: u32 = 10001;
/// The label that holds the digest of the build context.
const LABEL: &str = "org.slipway.context";

/// The cargo packages and the binaries taken from them.
const PACKAGES: [&str; 5] = ["gateway", "orchestrator", "runner", "notifier", "cli"];
pub const BINARIES: [&str; 5] = [
    "slipway-gateway",
    "slipway-orchestrator",
    "slipway-runner",
    "slipway-notifier",
    "slipway",
];

/// Debian's git, not whatever `git` comes first on PATH: its exec path
/// (`/usr/lib/git-core`) is the one the copied helpers live in.
const GIT: &str = "/usr/bin/git";
const GIT_CORE: &str = "/usr/lib/git-core";
const BUSYBOX: &str = "/bin/busybox";
const CA_CERTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Which cargo profile the binaries come from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The image to ship: `slipway/slipway:<version>` and `:latest`.
    Release,
    /// Debug binaries, for tests: `slipway/slipway:<version>-debug` only, so
    /// that it never passes for a release.
    Debug,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Debug => "debug",
        }
    }

    pub fn tags(self) -> Vec<String> {
        match self {
            Self::Release => vec![
                format!("{REPOSITORY}:{VERSION}"),
                format!("{REPOSITORY}:latest"),
            ],
            Self::Debug => vec![format!("{REPOSITORY}:{VERSION}-debug")],
        }
    }
}

/// What a run produced.
pub struct Built {
    pub tags: Vec<String>,
    pub id: String,
    /// False when the image was already up to date.
    pub rebuilt: bool,
    pub size_bytes: u64,
}

pub fn needs() -> Vec<Need> {
    vec![
        Need {
            package: "busybox-static",
            present: || Path::new(BUSYBOX).is_file(),
        },
        Need {
            package: "git",
            present: || {
                Path::new(GIT).is_file() && Path::new(GIT_CORE).join("git-upload-pack").exists()
            },
        },
        Need {
            package: "ca-certificates",
            present: || Path::new(CA_CERTS).is_file(),
        },
        Need {
            package: "docker.io",
            present: || sys::has("docker"),
        },
    ]
}

/// `cargo xtask images [--debug] [--no-build]`.
pub fn run(args: &[String]) -> Result<()> {
    let mut profile = Profile::Release;
    let mut cargo_build = true;
    for arg in args {
        match arg.as_str() {
            "--debug" => profile = Profile::Debug,
            "--no-build" => cargo_build = false,
            other => bail!(
                "unknown argument {other:?}; usage: cargo xtask images [--debug] [--no-build]"
            ),
        }
    }
    sys::ensure(&needs())?;
    let built = build(profile, cargo_build)?;
    println!(
        "{} {} ({}, {} MB): {}",
        if built.rebuilt {
            "built"
        } else {
            "up to date:"
        },
        built.tags.join(" "),
        built.id,
        built.size_bytes / 1_000_000,
        BINARIES
            .iter()
            .map(|b| format!("/usr/local/bin/{b}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}

/// Builds the binaries (unless `cargo_build` is off), assembles the context
/// and builds the image through the Docker Engine when its digest changed.
pub fn build(profile: Profile, cargo_build: bool) -> Result<Built> {
    if cargo_build {
        let mut cmd = sys::cargo();
        cmd.arg("build").arg("--bins");
        match profile {
            Profile::Release => {
                cmd.arg("--release");
                for p in PACKAGES {
                    cmd.args(["-p", p]);
                }
            }
            // With the test targets, features unify as under `cargo nextest
            // run --workspace`: when the test run has built everything, this
            // is a no-op rather than a second build of every dependency.
            Profile::Debug => {
                cmd.args(["--workspace", "--tests"]);
            }
        }
        eprintln!("xtask: {}", sys::display(&cmd));
        sys::run(&mut cmd)?;
    }
    let bin_dir = sys::target_dir().join(profile.dir());
    let context = sys::target_dir().join("images").join(profile.dir());
    assemble(&bin_dir, &context)?;
    let digest = digest_dir(&context)?;
    let tags = profile.tags();
    let current = image_label(&tags[0]);
    let rebuilt = current.as_deref() != Some(digest.as_str())
        || tags
            .iter()
            .skip(1)
            .any(|t| image_label(t).as_deref() != Some(&digest));
    if rebuilt {
        let mut cmd = Command::new("docker");
        cmd.arg("build")
            .arg("--label")
            .arg(format!("{LABEL}={digest}"));
        for tag in &tags {
            cmd.args(["--tag", tag]);
        }
        cmd.arg(&context).env("DOCKER_BUILDKIT", "0");
        eprintln!(
            "xtask: docker build of {} (context {})",
            tags.join(" "),
            context.display()
        );
        // The output only matters when the build fails, and then it is in
        // the error.
        sys::output(&mut cmd)?;
    }
    let inspect = sys::output(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Size}}",
        &tags[0],
    ]))?;
    let mut fields = inspect.split_whitespace();
    let id = fields.next().unwrap_or_default().to_owned();
    let size_bytes = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok(Built {
        tags,
        id,
        rebuilt,
        size_bytes,
    })
}

/// The context digest an image was built from, if it exists.
fn image_label(tag: &str) -> Option<String> {
    let format = format!("{{{{index .Config.Labels \"{LABEL}\"}}}}");
    sys::output(Command::new("docker").args(["image", "inspect", "--format", &format, tag]))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The Dockerfile of the context: everything is in `rootfs/` already, so
/// nothing runs at build time (a `FROM scratch` image has no shell to run
/// it with until busybox is in).
fn dockerfile() -> String {
    format!(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         COPY --chown={UID}:{UID} home/ /home/slipway/\n\
         COPY --chown={UID}:{UID} data/ /var/lib/slipway/\n\
         ENV PATH=/usr/local/bin:/usr/bin:/bin \\\n    \
         HOME=/home/slipway \\\n    \
         SSL_CERT_FILE={CA_CERTS} \\\n    \
         SLIPWAY_DATA_DIR=/var/lib/slipway\n\
         WORKDIR /home/slipway\n\
         USER {UID}:{UID}\n\
         CMD [\"slipway\", \"--help\"]\n"
    )
}

/// Lays out the build context afresh under `context`.
fn assemble(bin_dir: &Path, context: &Path) -> Result<()> {
    if context.exists() {
        fs::remove_dir_all(context)
            .with_context(|| format!("cannot clear {}", context.display()))?;
    }
    let rootfs = context.join("rootfs");
    for dir in [
        "home",
        "data",
        "rootfs/usr/local/bin",
        "rootfs/etc/ssl/certs",
        "rootfs/bin",
    ] {
        fs::create_dir_all(context.join(dir))?;
    }
    fs::write(context.join("Dockerfile"), dockerfile())?;
    fs::write(context.join("home/.keep"), "")?;
    fs::write(context.join("data/.keep"), "")?;
    let tmp = rootfs.join("tmp");
    fs::create_dir_all(&tmp)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))?;

    let mut elves: Vec<PathBuf> = Vec::new();
    for bin in BINARIES {
        let from = bin_dir.join(bin);
        if !from.is_file() {
            bail!(
                "{} is missing; build it first (cargo xtask images without --no-build)",
                from.display()
            );
        }
        let to = rootfs.join("usr/local/bin").join(bin);
        // Debug binaries are large: a hard link when the file systems allow.
        if fs::hard_link(&from, &to).is_err() {
            fs::copy(&from, &to).with_context(|| format!("cannot copy {}", from.display()))?;
        }
        elves.push(from);
    }

    copy_file(Path::new(GIT), &rootfs)?;
    elves.push(PathBuf::from(GIT));
    git_core(&rootfs)?;
    // Transports look for these on PATH as well as in the exec path.
    for helper in ["git-upload-pack", "git-receive-pack", "git-upload-archive"] {
        symlink("git", rootfs.join("usr/bin").join(helper))?;
    }
    let templates = Path::new("/usr/share/git-core/templates");
    if templates.is_dir() {
        copy_tree(templates, &rootfs.join("usr/share/git-core/templates"))?;
    }

    fs::copy(BUSYBOX, rootfs.join("bin/busybox"))?;
    let applets = sys::output(Command::new(BUSYBOX).arg("--list"))?;
    for applet in applets
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        let link = rootfs.join("bin").join(applet);
        if !link.exists() {
            symlink("busybox", link)?;
        }
    }

    for lib in shared_libraries(&elves)? {
        copy_file(&lib, &rootfs)?;
    }

    fs::copy(CA_CERTS, rootfs.join(CA_CERTS.trim_start_matches('/')))?;
    fs::write(
        rootfs.join("etc/passwd"),
        format!(
            "root:x:0:0:root:/root:/bin/sh\nslipway:x:{UID}:{UID}:slipway:/home/slipway:/bin/sh\n"
        ),
    )?;
    fs::write(
        rootfs.join("etc/group"),
        format!("root:x:0:\nslipway:x:{UID}:\n"),
    )?;
    fs::write(
        rootfs.join("etc/nsswitch.conf"),
        "passwd: files\ngroup: files\nhosts: files dns\n",
    )?;
    Ok(())
}

/// The exec path's entries: links as links, the `git` binary, and the
/// shell scripts some commands source. The other compiled helpers (HTTP,
/// IMAP, daemon) are left out: the runner fetches over HTTP with gix.
fn git_core(rootfs: &Path) -> Result<()> {
    let dest = rootfs.join(GIT_CORE.trim_start_matches('/'));
    fs::create_dir_all(&dest)?;
    let git_ino = fs::metadata(GIT)?.ino();
    for entry in fs::read_dir(GIT_CORE)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let meta = fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            symlink(fs::read_link(&path)?, dest.join(&name))?;
        } else if meta.is_file() && (meta.ino() == git_ino || name == "git") {
            symlink("../../bin/git", dest.join(&name))?;
        } else if meta.is_file() && !is_elf(&path)? {
            fs::copy(&path, dest.join(&name))?;
        }
    }
    Ok(())
}

fn is_elf(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    let mut file = fs::File::open(path)?;
    Ok(file.read(&mut magic)? == 4 && magic == *b"\x7fELF")
}

/// Every library (and the loader) the programs load, as `ldd` resolves
/// them on this machine.
fn shared_libraries(programs: &[PathBuf]) -> Result<BTreeSet<PathBuf>> {
    let mut libs = BTreeSet::new();
    for program in programs {
        let out = sys::output(Command::new("ldd").arg(program))
            .with_context(|| format!("ldd {}", program.display()))?;
        for line in out.lines() {
            let line = line.trim();
            if line.contains("=> not found") {
                bail!(
                    "{} needs a library this machine lacks: {line}",
                    program.display()
                );
            }
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or the
            // loader, `/lib64/ld-linux-x86-64.so.2 (0x...)`.
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => line,
            };
            let path = path.split_whitespace().next().unwrap_or_default();
            if path.starts_with('/') {
                libs.insert(PathBuf::from(path));
            }
        }
    }
    Ok(libs)
}

/// Copies a file (its content, symlinks followed) to the same path under
/// `rootfs`.
fn copy_file(path: &Path, rootfs: &Path) -> Result<()> {
    let to = rootfs.join(path.strip_prefix("/").unwrap_or(path));
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    if !to.exists() {
        fs::copy(path, &to).with_context(|| format!("cannot copy {}", path.display()))?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let meta = fs::symlink_metadata(entry.path())?;
        let dest = to.join(entry.file_name());
        if meta.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else if meta.file_type().is_symlink() {
            symlink(fs::read_link(entry.path())?, dest)?;
        } else {
            fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// A digest of the context: every path, its kind, mode and content (or
/// link target; for the hard-linked binaries, size and time), in a fixed
/// order.
fn digest_dir(dir: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut entries = Vec::new();
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let path = entry?.path();
            if fs::symlink_metadata(&path)?.is_dir() {
                stack.push(path.clone());
            }
            entries.push(path);
        }
    }
    entries.sort();
    for path in entries {
        let meta = fs::symlink_metadata(&path)?;
        let rel = path.strip_prefix(dir).unwrap_or(&path);
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update(meta.mode().to_le_bytes());
        if meta.file_type().is_symlink() {
            hasher.update(fs::read_link(&path)?.to_string_lossy().as_bytes());
        } else if meta.is_file() && meta.nlink() > 1 && rel.starts_with("rootfs/usr/local/bin") {
            // Our binaries, hard-linked from target/: cargo writes a new
            // file for each build, so size and modification time tell a
            // change without reading hundreds of megabytes each run.
            hasher.update(meta.len().to_le_bytes());
            hasher.update(meta.mtime().to_le_bytes());
            hasher.update(meta.mtime_nsec().to_le_bytes());
        } else if meta.is_file() {
            let mut file = fs::File::open(&path)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
        hasher.update([0]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}
