//! The union rules, one test each, and the commit round trip.

use super::*;
use proptest::prelude::*;

fn file(c: &str) -> Body {
    Body::Node(Node::file(c, 0o644))
}

fn e(name: &str, body: Body) -> Entry {
    Entry {
        name: name.into(),
        body,
    }
}

fn dir() -> Body {
    Body::Node(Node::dir(0o755))
}

fn base() -> Tree {
    apply(
        &Tree::new(),
        &vec![
            e("etc", dir()),
            e("etc/hosts", file("h")),
            e("etc/x/y", file("y")),
            e("bin/sh", file("sh")),
        ],
    )
    .expect("base")
}

#[test]
fn entries_make_their_parents_and_replace_what_was_there() {
    let t = base();
    assert_eq!(t.get("bin"), Some(&Node::dir(0o755)));
    let t2 = apply(&t, &vec![e("etc/x", file("now a file"))]).expect("apply");
    assert!(
        !t2.contains_key("etc/x/y"),
        "a directory replaced by a file loses its contents"
    );
}

#[test]
fn a_whiteout_deletes_from_the_layers_below() {
    let t = apply(
        &base(),
        &vec![e("etc/.wh.hosts", dir()), e("etc/.wh.x", dir())],
    )
    .expect("apply");
    assert!(!t.contains_key("etc/hosts") && !t.contains_key("etc/x") && !t.contains_key("etc/x/y"));
    assert!(t.contains_key("etc"));
}

#[test]
fn an_opaque_marker_hides_the_lower_contents_but_not_its_own_layers() {
    let t = apply(
        &base(),
        &vec![e("etc/.wh..wh..opq", dir()), e("etc/new", file("n"))],
    )
    .expect("apply");
    assert_eq!(
        t.keys()
            .filter(|p| is_under(p, "etc"))
            .cloned()
            .collect::<Vec<_>>(),
        ["etc", "etc/new"]
    );
}

#[test]
fn hostile_entries_are_refused() {
    let t = base();
    assert_eq!(
        apply(&t, &vec![e("../evil", file("x"))]),
        Err(Refusal::EscapingName("../evil".into()))
    );
    assert_eq!(
        apply(&t, &vec![e("/etc/passwd", file("x"))]),
        Err(Refusal::EscapingName("/etc/passwd".into()))
    );
    assert_eq!(
        apply(&t, &vec![e("a/../../b", file("x"))]),
        Err(Refusal::EscapingName("a/../../b".into()))
    );
    let with_link = apply(
        &t,
        &vec![e("lnk", Body::Node(Node::Symlink("/etc".into())))],
    )
    .expect("a symlink itself is fine");
    assert_eq!(
        apply(&with_link, &vec![e("lnk/shadow", file("x"))]),
        Err(Refusal::ThroughSymlink("lnk/shadow".into()))
    );
    assert_eq!(
        apply(&t, &vec![e("h", Body::Hardlink("../../etc/shadow".into()))]),
        Err(Refusal::EscapingName("../../etc/shadow".into()))
    );
    assert_eq!(
        apply(&t, &vec![e("h", Body::Hardlink("nope".into()))]),
        Err(Refusal::BadHardlink("h".into(), "nope".into()))
    );
    assert_eq!(
        apply(&t, &vec![e("h", Body::Hardlink("etc/hosts".into()))]),
        Err(Refusal::BadHardlink("h".into(), "etc/hosts".into())),
        "a link to a file of a lower layer (each layer is unpacked alone)"
    );
    assert_eq!(
        apply(&t, &vec![e("etc", file("f")), e("etc/x", file("x"))]),
        Err(Refusal::NotADirectory("etc/x".into())),
        "an entry under a file the same layer made"
    );
    let linked = apply(
        &t,
        &vec![
            e("etc/hosts", file("h")),
            e("h", Body::Hardlink("etc/hosts".into())),
        ],
    )
    .expect("hardlink");
    assert_eq!(resolve(&linked, "h"), t.get("etc/hosts"));
}

#[test]
fn a_hardlink_is_the_same_file_until_the_file_is_replaced() {
    let t = apply(
        &base(),
        &vec![
            e("etc/hosts", file("h")),
            e("h1", Body::Hardlink("etc/hosts".into())),
            e("h2", Body::Hardlink("h1".into())),
        ],
    )
    .expect("links");
    assert_eq!(
        t.get("h2"),
        Some(&Node::Hardlink("etc/hosts".into())),
        "links name the file's first name"
    );
    // A later layer replacing the file breaks the links: they keep the old content.
    let t2 = apply(&t, &vec![e("etc/hosts", file("new"))]).expect("replace");
    assert_eq!(t2.get("h1"), base().get("etc/hosts"));
    assert_eq!(t2.get("h2"), Some(&Node::Hardlink("h1".into())));
    // In a container, writing one name copies it up alone.
    let mut c = Container::new(t.clone());
    c.write("h1", b"changed").expect("write");
    let v = c.view();
    assert_eq!(resolve(&v, "etc/hosts"), base().get("etc/hosts"));
    assert_eq!(resolve(&v, "h2"), base().get("etc/hosts"));
    assert_eq!(apply(&t, &diff(&t, &v)), Ok(v));
}

#[test]
fn writes_copy_up_and_deletes_of_lower_paths_leave_whiteouts() {
    let mut c = Container::new(base());
    c.append("etc/hosts", b"+").expect("append");
    assert_eq!(
        c.upper.get("etc"),
        Some(&Some(Node::dir(0o755))),
        "the parent is copied up"
    );
    assert_eq!(
        c.upper.get("etc/hosts"),
        Some(&Some(Node::file("h+", 0o644)))
    );
    c.remove("bin/sh").expect("rm");
    assert_eq!(
        c.upper.get("bin/sh"),
        Some(&None),
        "a whiteout (0/0 char device)"
    );
    c.write("tmp.txt", b"t").expect("write");
    c.remove("tmp.txt").expect("rm");
    assert!(
        !c.upper.contains_key("tmp.txt"),
        "an upper-only file just goes"
    );
    assert_eq!(c.lower, base(), "lower layers never change");
}

#[test]
fn a_directory_made_where_one_was_deleted_is_opaque() {
    let mut c = Container::new(base());
    c.remove("etc/x/y").expect("rm");
    c.rmdir("etc/x").expect("rmdir");
    c.mkdir("etc/x").expect("mkdir");
    assert!(c.opaque.contains("etc/x"));
    assert!(!c.view().contains_key("etc/x/y"));
}

#[test]
fn refusals_on_the_merged_view() {
    let mut c = Container::new(base());
    assert_eq!(c.rmdir("etc"), Err(Refusal::NotEmpty("etc".into())));
    assert_eq!(c.mkdir("etc"), Err(Refusal::Exists("etc".into())));
    assert_eq!(
        c.write("nope/f", b""),
        Err(Refusal::NotFound("nope".into()))
    );
    assert_eq!(
        c.write("etc/hosts/f", b""),
        Err(Refusal::NotADirectory("etc/hosts/f".into()))
    );
    assert_eq!(
        c.write("etc", b""),
        Err(Refusal::IsADirectory("etc".into()))
    );
    assert_eq!(c.remove("etc"), Err(Refusal::IsADirectory("etc".into())));
    assert_eq!(
        c.rename("etc", "etc2"),
        Err(Refusal::CrossDevice("etc".into())),
        "overlayfs without redirect_dir"
    );
}

#[test]
fn renames_of_files_and_of_upper_directories() {
    let mut c = Container::new(base());
    c.rename("etc/hosts", "hosts2").expect("rename file");
    let v = c.view();
    assert!(!v.contains_key("etc/hosts") && v.contains_key("hosts2"));
    c.mkdir("d").expect("mkdir");
    c.write("d/f", b"f").expect("write");
    c.rename("d", "e").expect("rename upper dir");
    let v = c.view();
    assert!(!v.contains_key("d") && v.get("e/f") == Some(&Node::file("f", 0o644)));
}

#[test]
fn commit_gives_a_layer_that_rebuilds_the_view() {
    let mut c = Container::new(base());
    c.remove("etc/x/y").expect("rm");
    c.chmod("etc", 0o700).expect("chmod");
    c.symlink("link", "/etc/hosts").expect("symlink");
    let layer = diff(&c.lower, &c.view());
    assert_eq!(apply(&c.lower, &layer), Ok(c.view()));
}

fn xattrs() -> impl Strategy<Value = Xattrs> {
    proptest::collection::btree_map(
        "trusted\\.[ab]",
        proptest::collection::vec(any::<u8>(), 0..3),
        0..3,
    )
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        (
            proptest::collection::vec(any::<u8>(), 0..4),
            prop_oneof![Just(0o644u32), Just(0o755)]
        )
            .prop_map(|(content, mode)| Node::file(content, mode)),
        prop_oneof![Just(0o755u32), Just(0o700)].prop_map(Node::dir),
        (
            xattrs(),
            any::<bool>(),
            proptest::option::of((0i64..3, 0u32..2)),
            (0u32..2).prop_map(|u| (u * 1000, u * 1000)),
        )
            .prop_map(|(xattrs, is_dir, mtime, owner)| if is_dir {
                Node::Dir {
                    mode: 0o755,
                    xattrs,
                    mtime,
                    owner,
                }
            } else {
                Node::File {
                    content: b"x".to_vec(),
                    mode: 0o644,
                    xattrs,
                    mtime,
                    owner,
                }
            }),
        "[a-c]{1,2}".prop_map(Node::Symlink),
        Just(Node::Device('c', 1, 3)),
    ]
}

fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-c]", 1..4).prop_map(|v| v.join("/"))
}

/// A random, well-formed tree (built by applying random entries).
fn tree() -> impl Strategy<Value = Tree> {
    let entry = prop_oneof![
        4 => (path(), node()).prop_map(|(p, n)| Entry { name: p, body: Body::Node(n) }),
        1 => (path(), path()).prop_map(|(p, t)| Entry { name: p, body: Body::Hardlink(t) }),
    ];
    // Two layers, so links can be broken by the second; a refused layer is skipped.
    (
        proptest::collection::vec(entry.clone(), 0..10),
        proptest::collection::vec(entry, 0..5),
    )
        .prop_map(|(a, b)| {
            let t = apply(&Tree::new(), &a).unwrap_or_default();
            apply(&t, &b).unwrap_or(t)
        })
}

#[derive(Debug, Clone)]
enum Op {
    Write(String, u8),
    Append(String),
    Chmod(String),
    Mkdir(String),
    Remove(String),
    Rmdir(String),
    Rename(String, String),
    Symlink(String),
    Chown(String),
    SetXattr(String, u8),
    RemoveXattr(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (path(), any::<u8>()).prop_map(|(p, b)| Op::Write(p, b)),
        path().prop_map(Op::Append),
        path().prop_map(Op::Chmod),
        path().prop_map(Op::Mkdir),
        path().prop_map(Op::Remove),
        path().prop_map(Op::Rmdir),
        (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        path().prop_map(Op::Symlink),
        path().prop_map(Op::Chown),
        (path(), any::<u8>()).prop_map(|(p, b)| Op::SetXattr(p, b)),
        path().prop_map(Op::RemoveXattr),
    ]
}

fn well_formed(t: &Tree) {
    for (p, n) in t {
        let d = parent(p);
        assert!(
            d.is_empty() || matches!(t.get(d), Some(Node::Dir { .. })),
            "{p}: parent {d} is not a directory in {t:?}"
        );
        if let Node::Hardlink(first) = n {
            assert!(
                matches!(t.get(first), Some(Node::File { .. })),
                "{p}: link to {first}, which is no file, in {t:?}"
            );
        }
    }
}

proptest! {
    #[test]
    fn commit_round_trips_for_random_trees(lower in tree(), target in tree()) {
        well_formed(&lower);
        well_formed(&target);
        let layer = diff(&lower, &target);
        prop_assert_eq!(apply(&lower, &layer), Ok(target));
    }

    #[test]
    fn commit_round_trips_after_random_container_operations(lower in tree(), ops in proptest::collection::vec(op(), 0..20)) {
        let mut c = Container::new(lower.clone());
        for o in ops {
            let _ = match o {
                Op::Write(p, b) => c.write(&p, &[b]),
                Op::Append(p) => c.append(&p, b"+"),
                Op::Chmod(p) => c.chmod(&p, 0o600),
                Op::Mkdir(p) => c.mkdir(&p),
                Op::Remove(p) => c.remove(&p),
                Op::Rmdir(p) => c.rmdir(&p),
                Op::Rename(a, b) => c.rename(&a, &b),
                Op::Symlink(p) => c.symlink(&p, "target"),
                Op::Chown(p) => c.chown(&p, 1000, 1000),
                Op::SetXattr(p, b) => c.set_xattr(&p, "trusted.a", &[b]),
                Op::RemoveXattr(p) => c.remove_xattr(&p, "trusted.a"),
            };
            let view = c.view();
            well_formed(&view);
            prop_assert_eq!(&c.lower, &lower);
            prop_assert_eq!(apply(&lower, &diff(&lower, &view)), Ok(view));
        }
    }
}

// The rules below were found by berth-harness's union machine, where the
// kernel and the model first disagreed.

#[test]
fn an_implied_directory_takes_mode_0755_over_the_lower_one() {
    let lower = apply(&Tree::new(), &vec![e("d", Body::Node(Node::dir(0o700)))]).expect("lower");
    let t = apply(&lower, &vec![e("d/f", file("x"))]).expect("upper");
    assert_eq!(t.get("d"), Some(&Node::dir(0o755)));
    let t = apply(
        &lower,
        &vec![e("d/f", file("x")), e("d", Body::Node(Node::dir(0o750)))],
    )
    .expect("explicit");
    assert_eq!(t.get("d"), Some(&Node::dir(0o750)), "its own entry wins");
    let t = apply(&Tree::new(), &vec![e("o/.wh..wh..opq", file(""))]).expect("marker");
    assert_eq!(
        t.get("o"),
        Some(&Node::dir(0o755)),
        "a marker implies its directory"
    );
}

#[test]
fn rename_checks_come_in_the_kernels_order() {
    let mut c = Container::new(base());
    c.mkdir("new").expect("mkdir");
    assert_eq!(
        c.rename("new", "new/x"),
        Err(Refusal::Invalid("new/x".into()))
    );
    assert_eq!(
        c.rename("new", "bin/sh"),
        Err(Refusal::NotADirectory("bin/sh".into()))
    );
    assert_eq!(
        c.rename("bin/sh", "new"),
        Err(Refusal::IsADirectory("new".into()))
    );
    assert_eq!(
        c.rename("etc", "etc2"),
        Err(Refusal::CrossDevice("etc".into()))
    );
    assert_eq!(
        c.rename("bin/sh", "nope/sh"),
        Err(Refusal::NotFound("nope".into()))
    );
    assert_eq!(
        c.rename("bin/sh/x", "y"),
        Err(Refusal::NotADirectory("bin/sh/x".into()))
    );
}

#[test]
fn a_directory_moved_into_a_merged_one_is_opaque_and_an_opaque_one_moves() {
    let mut c = Container::new(base());
    c.mkdir("new").expect("mkdir");
    c.rename("new", "moved").expect("rename");
    assert!(
        c.opaque.contains("moved"),
        "the root is merged with the layers"
    );
    // A lower directory removed and made again is opaque, so it can move;
    // removing it again must leave a whiteout, the layers still have it.
    c.rmdir("etc").expect_err("not empty");
    c.remove("etc/hosts").expect("rm");
    c.remove("etc/x/y").expect("rm");
    c.rmdir("etc/x").expect("rmdir");
    c.rmdir("etc").expect("rmdir");
    c.mkdir("etc").expect("mkdir");
    assert!(c.opaque.contains("etc"));
    c.rmdir("etc").expect("rmdir");
    assert_eq!(c.upper.get("etc"), Some(&None), "a whiteout again");
    assert!(!c.view().contains_key("etc"));
}

#[test]
fn extended_attributes_go_with_their_node() {
    let x = |pairs: &[(&str, &str)]| -> Xattrs {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    };
    let d = |mode, xattrs| {
        Body::Node(Node::Dir {
            mode,
            xattrs,
            mtime: None,
            owner: (0, 0),
        })
    };
    let lower = apply(
        &Tree::new(),
        &vec![
            e("d", d(0o755, x(&[("trusted.a", "1")]))),
            e(
                "d/f",
                Body::Node(Node::File {
                    content: b"f".to_vec(),
                    mode: 0o644,
                    xattrs: x(&[("trusted.b", "2")]),
                    mtime: None,
                    owner: (0, 0),
                }),
            ),
        ],
    )
    .expect("lower");
    // Over a lower layer's directory, an entry shows only its own.
    let t = apply(&lower, &vec![e("d", d(0o700, x(&[("trusted.c", "3")])))]).expect("upper");
    assert_eq!(
        t.get("d").and_then(Node::xattrs),
        Some(&x(&[("trusted.c", "3")]))
    );
    // Twice in one layer, the second adds to the first.
    let t = apply(
        &Tree::new(),
        &vec![
            e("d", d(0o755, x(&[("trusted.a", "1")]))),
            e("d", d(0o700, x(&[("trusted.a", "9"), ("trusted.c", "3")]))),
        ],
    )
    .expect("twice");
    assert_eq!(
        t.get("d"),
        Some(&Node::Dir {
            mode: 0o700,
            xattrs: x(&[("trusted.a", "9"), ("trusted.c", "3")]),
            mtime: None,
            owner: (0, 0)
        })
    );
    // A directory a layer only implies has none.
    let t = apply(&lower, &vec![e("d/g", file("g"))]).expect("implied");
    assert_eq!(t.get("d"), Some(&Node::dir(0o755)));

    let mut c = Container::new(lower.clone());
    assert_eq!(
        c.remove_xattr("d/f", "trusted.a"),
        Err(Refusal::NoAttribute("d/f".into()))
    );
    assert!(c.upper.is_empty(), "a refused removal copies nothing up");
    c.write("d/f", b"new").expect("write");
    assert_eq!(
        c.view().get("d/f").and_then(Node::xattrs),
        Some(&x(&[("trusted.b", "2")])),
        "a truncating write keeps them"
    );
    assert_eq!(
        c.upper
            .get("d")
            .cloned()
            .flatten()
            .as_ref()
            .and_then(Node::xattrs),
        Some(&x(&[("trusted.a", "1")])),
        "copy-up of the parent keeps its"
    );
    c.set_xattr("d", "trusted.z", b"").expect("set");
    c.remove_xattr("d", "trusted.a").expect("remove");
    assert_eq!(
        c.view().get("d").and_then(Node::xattrs),
        Some(&x(&[("trusted.z", "")]))
    );
    let layer = diff(&c.lower, &c.view());
    assert_eq!(apply(&c.lower, &layer), Ok(c.view()));
}

#[test]
fn a_layers_size_counts_what_it_holds_once() {
    let layer = vec![
        e("a", file("xyz")),
        e("a", dir()),
        e("a/b", file("12")),
        e("c", Body::Hardlink("a/b".into())),
        e("a/b", file("9")),
        e("d", file("4444")),
        e("f", Body::Hardlink("d".into())),
    ];
    assert_eq!(layer_size(&layer), Ok(2 + 1 + 4));
    let mut c = Container::new(apply(&Tree::new(), &layer).expect("layer"));
    c.write("d", b"55").expect("write");
    c.chmod("a/b", 0o600).expect("chmod");
    assert_eq!(c.upper_size(), 2 + 1, "the files copied up");
}

#[test]
fn times_stay_through_copy_up_and_go_with_changes() {
    let t = |s| Some((s, 5u32));
    let lower = apply(
        &Tree::new(),
        &vec![
            e("d", Body::Node(Node::dir(0o755).with_mtime(t(1)))),
            e("d/f", Body::Node(Node::file("f", 0o644).with_mtime(t(2)))),
            e("d/g", Body::Node(Node::file("g", 0o644).with_mtime(t(3)))),
        ],
    )
    .expect("lower");
    let mut c = Container::new(lower);
    c.chmod("d/f", 0o600).expect("chmod");
    c.set_xattr("d/g", "trusted.a", b"").expect("setxattr");
    let v = c.view();
    assert_eq!(
        (v["d"].mtime(), v["d/f"].mtime(), v["d/g"].mtime()),
        (t(1), t(2), t(3)),
        "copy-up, chmod and xattrs keep times, the parent's too"
    );
    c.write("d/f", b"new").expect("write");
    assert_eq!(
        (c.view()["d"].mtime(), c.view()["d/f"].mtime()),
        (t(1), None)
    );
    c.write("d/h", b"h").expect("a new name");
    assert_eq!(c.view()["d"].mtime(), None, "the directory changed");
    let committed = c.committed();
    assert_eq!(
        (committed["d/g"].mtime(), committed["d/f"].mtime()),
        (Some((3, 0)), None),
        "commit keeps whole seconds"
    );
}
