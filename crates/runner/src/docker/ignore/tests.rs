//! The rules against the examples of Docker's documentation and the cases
//! its pattern matcher is known to decide.

use super::*;

fn ignore(content: &str) -> Ignore {
    Ignore::parse(content.as_bytes()).unwrap_or_else(|e| panic!("{content:?}: {e}"))
}

/// Whether a walk of the context sends `path`: each directory above it is
/// matched first (what it matched is carried down, as the walk does), and
/// an excluded one is entered only when [`Ignore::enters`] says so.
fn sent(ignore: &Ignore, path: &str) -> bool {
    let mut parent = Vec::new();
    for dir in ancestors(path.as_bytes()) {
        let (excluded, matched) = ignore.excludes(dir, &parent);
        if excluded && !ignore.enters(dir) {
            return false;
        }
        parent = matched;
    }
    !ignore.excludes(path.as_bytes(), &parent).0
}

/// `(path, sent)` pairs against one `.dockerignore`.
fn check(content: &str, cases: &[(&str, bool)]) {
    let ignore = ignore(content);
    for (path, expected) in cases {
        assert_eq!(
            sent(&ignore, path),
            *expected,
            "{path:?} with {content:?}: expected {}",
            if *expected { "sent" } else { "left out" }
        );
    }
}

#[test]
fn the_documented_example() {
    // docs.docker.com, "Build context": the example .dockerignore.
    check(
        "# comment\n*/temp*\n*/*/temp*\ntemp?\n",
        &[
            ("somedir/temporary.txt", false),
            ("somedir/temp", false),
            ("somedir/temp/inside.txt", false),
            ("somedir/subdir/temporary.txt", false),
            ("tempa", false),
            ("tempb", false),
            // Anchored at the root, one level each.
            ("temporary.txt", true),
            ("temp", true),
            ("tempab", true),
            ("a/b/c/temporary.txt", true),
            ("somedir/other.txt", true),
            ("# comment", true),
        ],
    );
}

#[test]
fn double_stars_span_directories() {
    check(
        "**/*.go\n",
        &[
            ("main.go", false),
            ("cmd/app/main.go", false),
            ("main.gox", true),
            ("go.mod", true),
        ],
    );
    check("**\n", &[("file", false), ("dir/file", false)]);
    check(
        "dir/**\n",
        &[
            ("dir", true),
            ("dir/file", false),
            ("dir/sub/file", false),
            ("dirx/file", true),
        ],
    );
    check(
        "**/dir\n",
        &[("dir", false), ("a/dir", false), ("a/dir/file", false)],
    );
    check(
        "**/dir2/*\n",
        &[("dir/dir2/file", false), ("dir/dir2", true)],
    );
    check(
        "**file\n",
        &[("file", false), ("dir/file", false), ("dir/xfile", false)],
    );
    check(
        "**/foo/bar\n",
        &[
            ("foo/bar", false),
            ("dir/foo/bar", false),
            ("dir/dir2/foo/bar", false),
            ("xfoo/bar", true),
        ],
    );
    check("**/.foo\n", &[(".foo", false), ("bar.foo", true)]);
    check(
        "**/**/*.txt\n",
        &[("file.txt", false), ("dir/dir/file.txt", false)],
    );
    check("abc/**\n", &[("abc", true), ("abc/def/ghi", false)]);
    check("*/**\n", &[("a", true), ("a/b", false), ("a/b/c", false)]);
}

#[test]
fn double_stars_glued_to_a_name_work_as_docker_reads_them() {
    check(
        "a**/*.txt\n",
        &[
            ("a/file.txt", false),
            ("a/dir/file.txt", false),
            ("ab/file.txt", false),
            ("b/file.txt", true),
        ],
    );
    check(
        "a/*.txt**\n",
        &[("a/file.txt", false), ("a/file.txt2", false)],
    );
    // `a**b`: `a`, then nothing or anything ending with `/`, then `b`.
    check(
        "a**b\n",
        &[
            ("ab", false),
            ("a/b", false),
            ("ax/y/b", false),
            ("axb", true),
        ],
    );
    // A prefix: `**` at the end of a plain name.
    check(
        "foo**\n",
        &[("foo", false), ("foobar", false), ("fo", true)],
    );
}

#[test]
fn single_wildcards_stay_in_one_segment() {
    check(
        "a*/b\n",
        &[("abc/b", false), ("a/c/b", true), ("a/b", false)],
    );
    check("a*b\n", &[("a/b", true), ("axxb", false)]);
    check("a?b\n", &[("a/b", true), ("axb", false), ("ab", true)]);
    check(".*\n", &[(".foo", false), ("foo", true)]);
    check("abc?def\n", &[("abcZdef", false), ("abcdef", true)]);
    // One character, not one byte, as in Docker's regular expressions.
    check("a?b\n", &[("a☺b", false)]);
    check("a[^a]b\n", &[("a☺b", false)]);
    check("a???b\n", &[("a☺b", true)]);
    check("a*\n", &[("aé/x", false)]);
    check("é?\n", &[("éa", false), ("éaa", true)]);
}

#[test]
fn classes_and_escapes_follow_go() {
    check("a[b-d]e\n", &[("ae", true), ("ace", false), ("aae", true)]);
    check("a[^b-d]e\n", &[("aze", false), ("ace", true)]);
    // Go has no `[!...]`: the `!` is a member.
    check("[!a]x\n", &[("!x", false), ("ax", false), ("bx", true)]);
    check("[^!]x\n", &[("!x", true), ("bx", false)]);
    check("[\\]a]x\n", &[("]x", false), ("ax", false), ("bx", true)]);
    check("[\\-z]x\n", &[("-x", false), ("zx", false), ("yx", true)]);
    check("[!^]x\n", &[("!x", false), ("^x", false), ("ax", true)]);
    check("[ -/]x\n", &[("!x", false), ("-x", false), ("ax", true)]);
    check("a\\*b\n", &[("a*b", false), ("ab", true), ("axb", true)]);
    check("a\\\\\n", &[("a\\", false)]);
    // What a regular expression or a glob would read as syntax is literal.
    check("a(b)c/def\n", &[("a(b)c/def", false), ("a(b)c/xyz", true)]);
    check("a.|)$(}+{bc\n", &[("a.|)$(}+{bc", false)]);
    check("abc.def\n", &[("abcdef", true), ("abc.def", false)]);
    check("{a,b}\n", &[("a", true), ("{a,b}", false)]);
    check(
        "dist/*.whl\n",
        &[(
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            false,
        )],
    );
}

#[test]
fn exceptions_and_the_last_match_decides() {
    check(
        "*.md\n!README.md\n",
        &[
            ("README.md", true),
            ("CHANGES.md", false),
            // Anchored: a subdirectory's markdown is not `*.md`.
            ("docs/guide.md", true),
        ],
    );
    // The documentation's two orderings.
    check(
        "*.md\n!README*.md\nREADME-secret.md\n",
        &[
            ("README.md", true),
            ("README-x.md", true),
            ("README-secret.md", false),
            ("other.md", false),
        ],
    );
    check(
        "*.md\nREADME-secret.md\n!README*.md\n",
        &[("README-secret.md", true), ("other.md", false)],
    );
    check("!fileutils.go\n*.go\n", &[("fileutils.go", false)]);
    check("*.go\n!fileutils.go\n", &[("fileutils.go", true)]);
    check(
        "**\n!util/docker/web\n",
        &[("util/docker/web/foo", true), ("util/docker/other", false)],
    );
    check(
        "**\n!util/docker/web\nutil/docker/web/foo\n",
        &[
            ("util/docker/web/foo", false),
            ("util/docker/web/bar", true),
        ],
    );
}

#[test]
fn an_excluded_directory_is_entered_only_for_an_exception_inside_it() {
    let content = "docs\n!docs/README.md\n";
    check(
        content,
        &[
            ("docs/README.md", true),
            ("docs/other.md", false),
            ("docs/sub/README.md", false),
        ],
    );
    let docs = ignore(content);
    assert!(docs.enters(b"docs"));
    // The directory's own entry is not sent, only what is re-included.
    assert!(docs.excludes(b"docs", &[]).0);
    check("docs/\n!docs/README.md\n", &[("docs/README.md", true)]);
    check("docs/*\n!docs/README.md\n", &[("docs/README.md", true)]);
    check(
        "a\n!a/b/c\n",
        &[("a/b/c", true), ("a/b/d", false), ("a/x", false)],
    );
    // As in Docker: an exception whose text does not start with the
    // directory does not open it.
    check("docs\n!**/README.md\n", &[("docs/README.md", false)]);
    // Without exceptions an excluded directory is never entered.
    assert!(!ignore("docs\n").enters(b"docs"));
}

#[test]
fn the_dockerfile_and_the_ignore_file_are_always_sent() {
    let mut all = ignore("*\n");
    all.keep("Dockerfile");
    all.keep(FILE);
    assert!(sent(&all, "Dockerfile"));
    assert!(sent(&all, ".dockerignore"));
    assert!(!sent(&all, "src"));
    let mut nested = ignore("build\n");
    nested.keep("./build//Dockerfile");
    assert!(nested.enters(b"build"));
    assert!(sent(&nested, "build/Dockerfile"));
    assert!(!sent(&nested, "build/other"));
}

#[test]
fn lines_are_read_as_docker_reads_them() {
    check(
        "\u{feff}*.log\r\n  \t\n   *.tmp   \n  # not a comment\n/foo/bar\n./x/../baz/\n! keep.log \n",
        &[
            ("a.log", false),
            ("keep.log", true),
            ("a.tmp", false),
            ("# not a comment", false),
            ("foo/bar", false),
            ("foo/bar/baz", false),
            ("baz", false),
            ("x", true),
        ],
    );
    // For historical reasons `.` excludes nothing.
    check(".\n", &[("a", true)]);
    assert!(ignore("").patterns.is_empty());
    assert!(ignore("# only\n\n   \n").patterns.is_empty());
}

#[test]
fn a_malformed_pattern_names_its_line() {
    let cases = [
        ("# c\n\n*.md\n[a-\n", 4, "[a-"),
        ("[\n", 1, "["),
        ("x\n[]\n", 2, "[]"),
        ("[^]\n", 1, "[^]"),
        ("[a-]\n", 1, "[a-]"),
        ("[z-a]\n", 1, "[z-a]"),
        ("[-a]\n", 1, "[-a]"),
        ("a\\\n", 1, "a\\"),
        ("ok\n!\n", 2, "!"),
        ("  !  \n", 1, "!"),
        ("!/\n", 1, "!/"),
        ("[α]\n", 1, "[α]"),
    ];
    for (content, line, pattern) in cases {
        let e = Ignore::parse(content.as_bytes()).err();
        let e = e.unwrap_or_else(|| panic!("{content:?} is refused"));
        assert_eq!(
            (e.line, e.pattern.as_str()),
            (line, pattern),
            "{content:?}: {e}"
        );
        assert!(
            e.to_string()
                .starts_with(&format!(".dockerignore line {line}: "))
        );
    }
    let e = Ignore::parse(b"ok\nbad\xff\n").err();
    assert_eq!(e.map(|e| e.line), Some(2));
    // A comment is skipped before anything else is read.
    assert!(Ignore::parse(b"#\xff\n").is_ok());
}

#[test]
fn paths_are_cleaned_as_go_cleans_them() {
    let cases = [
        ("", "."),
        (".", "."),
        ("a/", "a"),
        ("./a//b/./", "a/b"),
        ("a/../b", "b"),
        ("a/../..", ".."),
        ("../a", "../a"),
        ("/..", "/"),
        ("/a/../b/", "/b"),
        ("!a/./b", "!a/b"),
    ];
    for (path, cleaned) in cases {
        assert_eq!(clean(path), cleaned, "{path:?}");
    }
}
