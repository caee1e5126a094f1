//! The comparisons after each step, with diffs a person can read.

use std::collections::{BTreeMap, BTreeSet};

use berth::digest::Digest;
use berth_model::union::{Container, Node, Tree, parent, resolve};

use super::observe::{self, Seen, shown};
use super::reference::UnionState;
use super::sut::{Freed, Sut};
use super::transitions::{Outcome, Transition};

/// The step's outcome is the model's.
pub fn outcome(t: &Transition, want: Option<&Outcome>, got: &Outcome) {
    assert_eq!(
        want,
        Some(got),
        "the outcome of {t:?}: the model says {want:?}, berth and the kernel did {got:?}"
    );
}

/// What the kernel should show for a model node (a hardlink is its file).
fn seen(tree: &Tree, path: &str, n: &Node) -> Seen {
    let n = match n {
        Node::Hardlink(_) => resolve(tree, path).unwrap_or(n),
        _ => n,
    };
    match n {
        Node::File {
            content,
            mode,
            xattrs,
            mtime,
            owner,
        } => Seen::File(*mode, shown(content), xattrs.clone(), *owner, *mtime),
        Node::Dir {
            mode,
            xattrs,
            mtime,
            owner,
        } => Seen::Dir(*mode, xattrs.clone(), *owner, *mtime),
        Node::Symlink(t) => Seen::Symlink(t.clone()),
        Node::Device(k, ma, mi) => Seen::Device(*k, *ma, *mi),
        Node::Hardlink(first) => Seen::Symlink(format!("<a link to {first}, which is gone>")),
    }
}

/// `got` without the times `want` does not know (the model leaves the
/// times of what a container changed to the kernel).
fn masked(want: &BTreeMap<String, Seen>, got: BTreeMap<String, Seen>) -> BTreeMap<String, Seen> {
    got.into_iter()
        .map(|(p, s)| match want.get(&p) {
            Some(w) if w.time().is_none() => (p, s.untimed()),
            _ => (p, s),
        })
        .collect()
}

/// One line per path where the two maps differ.
pub fn map_diff(
    what: &str,
    want: &BTreeMap<String, Seen>,
    got: &BTreeMap<String, Seen>,
) -> Option<String> {
    let keys: BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    let lines: Vec<String> = keys
        .into_iter()
        .filter(|k| want.get(*k) != got.get(*k))
        .map(|k| {
            let show = |s: Option<&Seen>| s.map_or("nothing".to_string(), |s| format!("{s:?}"));
            format!(
                "    {k}: model {}, berth {}",
                show(want.get(k)),
                show(got.get(k))
            )
        })
        .collect();
    (!lines.is_empty()).then(|| format!("{what}:\n{}", lines.join("\n")))
}

/// What `berth diff` must list for the model's container, as `docker diff`:
/// each name of the upper layer is `C` when the image's layers have it and `A`
/// when not; a whiteout of a name they have is `D`; an opaque directory over
/// one of theirs also deletes each of their names in it it does not have.
pub fn want_changes(c: &Container) -> BTreeSet<(String, char)> {
    let mut out = BTreeSet::new();
    for (p, n) in &c.upper {
        let in_lower = c.lower.contains_key(p);
        let Some(n) = n else {
            if in_lower {
                out.insert((format!("/{p}"), 'D'));
            }
            continue;
        };
        out.insert((format!("/{p}"), if in_lower { 'C' } else { 'A' }));
        if matches!(n, Node::Dir { .. })
            && c.opaque.contains(p)
            && matches!(c.lower.get(p), Some(Node::Dir { .. }))
        {
            for gone in c.lower.keys().filter(|k| parent(k) == p) {
                if !c.upper.contains_key(gone) {
                    out.insert((format!("/{gone}"), 'D'));
                }
            }
        }
    }
    out
}

/// The container's root and its upper layer are what the model says, and
/// the only mount under the case's root is the container's.
pub fn state(sut: &Sut, r: &UnionState) {
    let c = &r.container;
    let view = c.view();
    let want_root: BTreeMap<String, Seen> = view
        .iter()
        .map(|(p, n)| (p.clone(), seen(&view, p, n)))
        .collect();
    let want_upper: BTreeMap<String, Seen> = c
        .upper
        .iter()
        .map(|(p, n)| {
            let s = match n {
                None => Seen::Whiteout,
                Some(n) => seen(&view, p, n),
            };
            (p.clone(), s)
        })
        .collect();
    let mut problems = Vec::new();
    match observe::walk(&sut.rootfs()) {
        Ok(got) => problems.extend(map_diff(
            "the container's root",
            &want_root,
            &masked(&want_root, got.nodes),
        )),
        Err(e) => problems.push(format!("walking the container's root: {e}")),
    }
    match observe::walk(&sut.snapshot.upper()) {
        Ok(got) => {
            problems.extend(map_diff(
                "the upper layer",
                &want_upper,
                &masked(&want_upper, got.nodes),
            ));
            problems.extend(crate::diff(
                "opaque directories of the upper layer",
                &c.opaque,
                &got.opaque,
            ));
        }
        Err(e) => problems.push(format!("walking the upper layer: {e}")),
    }
    match berth::layers::changes::changes(&sut.snapshot) {
        Ok(list) => {
            let got: BTreeSet<(String, char)> =
                list.into_iter().map(|c| (c.path, c.kind)).collect();
            problems.extend(crate::diff(
                "berth diff (path, kind)",
                &want_changes(c),
                &got,
            ));
        }
        Err(e) => problems.push(format!("berth diff: {e}")),
    }
    // berth export: the container's root as a tar, with its counts.
    match berth::layers::changes::export(&sut.snapshot, Vec::new()) {
        Ok((tar, written)) => match observe::read_export(&tar) {
            Ok((nodes, entries, bytes)) => {
                // A tar header holds whole seconds.
                let want: BTreeMap<String, Seen> = want_root
                    .iter()
                    .map(|(p, s)| (p.clone(), s.clone().in_seconds()))
                    .collect();
                problems.extend(map_diff("berth export", &want, &masked(&want, nodes)));
                if (written.entries, written.content) != (entries, bytes) {
                    problems.push(format!(
                        "berth export counted {} entries and {} bytes; the archive has {entries} and {bytes}",
                        written.entries, written.content
                    ));
                }
                let want_bytes = berth_model::union::content_bytes(&view);
                if bytes != want_bytes {
                    problems.push(format!(
                        "berth export holds {bytes} bytes of files; the model's root has {want_bytes}"
                    ));
                }
            }
            Err(e) => problems.push(e),
        },
        Err(e) => problems.push(format!("berth export: {e}")),
    }
    problems.extend(store(sut, r));
    let mounts: BTreeSet<String> = observe::mounts_under(sut.root()).into_iter().collect();
    let want_mounts: BTreeSet<String> = [sut.rootfs().display().to_string()].into();
    problems.extend(crate::diff(
        "mounts under the case's root",
        &want_mounts,
        &mounts,
    ));
    assert!(
        problems.is_empty(),
        "after {:?} ({} commits so far) the runtime differs from the model:\n{}",
        sut.step,
        r.commits,
        problems.join("\n")
    );
}

/// The image store holds exactly the images the model has, with their tags
/// and sizes, and exactly their blobs and unpacked layers (and the
/// container's).
fn store(sut: &Sut, r: &UnionState) -> Vec<String> {
    let mut problems = Vec::new();
    let db = match sut.store.db() {
        Ok(db) => db,
        Err(e) => return vec![format!("the image database: {e}")],
    };
    let present: Vec<usize> = (0..r.images.len())
        .filter(|i| r.images[*i].present)
        .collect();
    let want: BTreeSet<usize> = present.iter().copied().collect();
    let got: BTreeSet<usize> = (0..sut.images.len())
        .filter(|i| db.images.contains_key(&sut.images[*i].id))
        .collect();
    problems.extend(crate::diff(
        "images (by the step that made them)",
        &want,
        &got,
    ));
    let want: BTreeSet<(String, usize)> = r
        .images
        .iter()
        .enumerate()
        .filter(|(_, im)| im.tagged)
        .map(|(i, _)| ("union:case".to_string(), i))
        .collect();
    let got: BTreeSet<(String, usize)> = db
        .tags
        .iter()
        .map(|(t, id)| {
            let i = sut.images.iter().position(|m| &m.id == id);
            (t.clone(), i.unwrap_or(usize::MAX))
        })
        .collect();
    problems.extend(crate::diff("tags (tag, image)", &want, &got));
    let want: BTreeMap<usize, u64> = present
        .iter()
        .map(|i| (*i, r.images[*i].layer_sizes.iter().sum()))
        .collect();
    let got: BTreeMap<usize, u64> = present
        .iter()
        .filter_map(|i| {
            db.images
                .get(&sut.images[*i].id)
                .map(|rec| (*i, rec.size()))
        })
        .collect();
    if want != got {
        problems.push(format!(
            "image sizes (image → bytes): model {want:?}, berth {got:?}"
        ));
    }
    let made = |i: &usize| sut.images.get(*i);
    let want: BTreeSet<String> = present
        .iter()
        .filter_map(made)
        .flat_map(|m| m.blobs.iter().map(|d| d.hex().to_string()))
        .collect();
    let got: BTreeSet<String> = sut.blobs().into_keys().collect();
    problems.extend(crate::diff("blobs", &want, &got));
    let want: BTreeSet<String> = present
        .iter()
        .chain([&r.current])
        .filter_map(made)
        .flat_map(|m| m.diff_ids.iter().map(|d| d.hex().to_string()))
        .collect();
    let got: BTreeSet<String> = sut
        .layer_dirs()
        .into_iter()
        .map(|d| d.hex().to_string())
        .collect();
    problems.extend(crate::diff("unpacked layers", &want, &got));
    problems
}

/// What a removal reported freeing is what went: the blob files' bytes and
/// the sizes of the layers unpacked no more (as the model has them).
pub fn freed(sut: &Sut, r: &UnionState, t: &Transition, f: &Freed) {
    let sizes: BTreeMap<&Digest, u64> = sut
        .images
        .iter()
        .zip(&r.images)
        .flat_map(|(m, im)| m.diff_ids.iter().zip(im.layer_sizes.iter().copied()))
        .collect();
    let layers: u64 = f.layers.iter().filter_map(|d| sizes.get(d)).sum();
    assert_eq!(
        f.reported,
        f.blob_bytes + layers,
        "{t:?} reported {} bytes freed; {} bytes of blobs and {layers} of layers ({}) went",
        f.reported,
        f.blob_bytes,
        f.layers.len()
    );
}

/// After the case: no mount, no container layer left.
pub fn empty(sut: &Sut) {
    let mounts = observe::mounts_under(sut.root());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let snaps = sut
        .store
        .snapshots()
        .list()
        .map(|l| l.len())
        .unwrap_or(usize::MAX);
    assert_eq!(snaps, 0, "container layers left");
}
