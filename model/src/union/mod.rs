//! Union filesystems: image layers, the overlay view, container writes, commit.
//!
//! Rules encoded here, from the OCI image spec (layer.md: changesets, whiteouts)
//! and the kernel's Documentation/filesystems/overlayfs.rst:
//!
//! - A tree maps relative paths ("etc/hosts") to nodes: files with content and
//!   mode, directories, symlinks, device nodes.
//! - A layer is the list of tar entries it holds. `a/.wh.NAME` deletes `a/NAME`
//!   from the layers below; `a/.wh..wh..opq` hides everything below `a` that lower
//!   layers had. Applying a layer first makes those deletions, then adds its
//!   entries in order; an entry replaces whatever was at its path (a directory
//!   replaced by a file loses its contents).
//! - Hostile entries are refused: absolute names, `..` components, an entry under
//!   a path that is a symlink, a hardlink whose target is not a file of the same
//!   layer, an entry under a name that an earlier entry of the layer made a
//!   non-directory.
//! - An entry implies its parent directories (0755), whiteouts and opaque
//!   markers included: a directory the layer only implies takes that mode.
//! - A hardlink is the same file under another name: the tree records it as a
//!   link to the first name ([`Node::Hardlink`]). Replacing or deleting that file
//!   leaves the other names with the old content (the link is broken), as tar
//!   extraction and overlayfs' copy-up do.
//! - Files and directories carry extended attributes. A layer's entry sets
//!   its node's (PAX `SCHILY.xattr.*` records); a directory entry over a
//!   directory the same layer already made adds to that one's, as tar
//!   extraction does, while over a lower layer's directory it shows only its
//!   own (overlayfs shows the topmost layer's directory). A directory a layer
//!   only implies has none. Copy-up keeps them; commit writes them.
//! - Files and directories have an owner: an image's are its entries', what a
//!   container makes is its user's (root, here), copy-up keeps them.
//! - Files and directories have a modification time: an image's are its
//!   entries' (a directory's set once the layer is unpacked, so what the layer
//!   put in it does not change it; a directory a layer only implies has the
//!   time it was unpacked at, which the model does not know). In a container,
//!   copy-up keeps them (a copied-up parent's too); writing a file, and making,
//!   removing or renaming a name in a directory, gives the time of the change
//!   (unknown to the model); chmod and extended attributes do not. Commit
//!   writes what the upper layer holds with its times in whole seconds (a tar
//!   header's).
//! - overlayfs stores a deletion in the upper directory as a 0/0 character
//!   device and an opaque directory with an xattr; the merged view of lower
//!   layers plus an upper is what applying them in order gives.
//! - Container operations change only the upper layer: a write copies the file
//!   (and its parent directories) up first; removing something a lower layer has
//!   leaves a whiteout; a directory made where a whiteout was is opaque; renaming
//!   a directory that a lower layer has fails with EXDEV (overlayfs without
//!   redirect_dir, the default).
//! - Commit: `diff(lower, merged)` is a layer, and applying it to `lower` gives
//!   `merged` back.

mod ops;

use std::collections::BTreeMap;

pub use ops::Container;

/// Extended attributes: name → value.
pub type Xattrs = BTreeMap<String, Vec<u8>>;

/// A modification time (seconds, nanoseconds); `None`: one the model does not
/// know (the time a container or an unpack made the change).
pub type Mtime = Option<(i64, u32)>;

/// A node of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file.
    File {
        /// Its bytes.
        content: Vec<u8>,
        /// Permission bits.
        mode: u32,
        /// Its extended attributes.
        xattrs: Xattrs,
        /// Its modification time.
        mtime: Mtime,
        /// Its owner (uid, gid).
        owner: (u32, u32),
    },
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Its extended attributes.
        xattrs: Xattrs,
        /// Its modification time.
        mtime: Mtime,
        /// Its owner (uid, gid).
        owner: (u32, u32),
    },
    /// A symbolic link.
    Symlink(String),
    /// A character (`'c'`) or block (`'b'`) device.
    Device(char, u32, u32),
    /// Another name of the file at this path (the file's first name).
    Hardlink(String),
}

impl Node {
    /// A file of root's without extended attributes, its time not known.
    pub fn file(content: impl Into<Vec<u8>>, mode: u32) -> Node {
        Node::File {
            content: content.into(),
            mode,
            xattrs: Xattrs::new(),
            mtime: None,
            owner: (0, 0),
        }
    }

    /// A directory of root's without extended attributes, its time not known.
    pub fn dir(mode: u32) -> Node {
        Node::Dir {
            mode,
            xattrs: Xattrs::new(),
            mtime: None,
            owner: (0, 0),
        }
    }

    /// Its modification time (a symlink's and a device's are not modelled).
    pub fn mtime(&self) -> Mtime {
        match self {
            Node::File { mtime, .. } | Node::Dir { mtime, .. } => *mtime,
            _ => None,
        }
    }

    /// The node with its modification time set (for a file or directory).
    pub fn with_mtime(mut self, t: Mtime) -> Node {
        if let Node::File { mtime, .. } | Node::Dir { mtime, .. } = &mut self {
            *mtime = t;
        }
        self
    }

    /// Its extended attributes (a symlink, a device or a link name has none
    /// of its own).
    pub fn xattrs(&self) -> Option<&Xattrs> {
        match self {
            Node::File { xattrs, .. } | Node::Dir { xattrs, .. } => Some(xattrs),
            _ => None,
        }
    }
}

/// The node at `path`, through a hardlink to the file it names.
pub fn resolve<'a>(tree: &'a Tree, path: &str) -> Option<&'a Node> {
    match tree.get(path) {
        Some(Node::Hardlink(first)) => tree.get(first),
        other => other,
    }
}

/// After `tree` was changed from `before`: every name that was a link to a file
/// that has since been replaced, deleted or set anew (`set`: the names this
/// change set, as a copy-up sets a name even when nothing of it changes) keeps
/// the old file, unless this change set the name itself. The first such name
/// becomes the file; the others link to it.
pub fn break_links(tree: &mut Tree, before: &Tree, set: &std::collections::BTreeSet<String>) {
    let stale: Vec<(String, String)> = tree
        .iter()
        .filter_map(|(p, n)| match n {
            Node::Hardlink(first)
                if !set.contains(p)
                    && before.get(p) == Some(n)
                    && (set.contains(first) || tree.get(first) != before.get(first)) =>
            {
                Some((p.clone(), first.clone()))
            }
            _ => None,
        })
        .collect();
    relink(tree, stale, |first| before.get(first).cloned());
}

/// Gives `links` (name, the first name it linked to) the file again: the first
/// name of each group becomes `file_of(first)`, the others link to it.
fn relink(tree: &mut Tree, links: Vec<(String, String)>, file_of: impl Fn(&str) -> Option<Node>) {
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    for (p, first) in links {
        match renamed.get(&first) {
            Some(new_first) => {
                tree.insert(p, Node::Hardlink(new_first.clone()));
            }
            None => {
                if let Some(file) = file_of(&first) {
                    tree.insert(p.clone(), file);
                }
                renamed.insert(first, p);
            }
        }
    }
}

/// Before the files at or below `gone` are replaced or deleted: the names that
/// link to them keep the file. The first such name becomes the file; the others
/// link to it.
pub fn detach(tree: &mut Tree, gone: &str) {
    let links: Vec<(String, String)> = tree
        .iter()
        .filter_map(|(p, n)| match n {
            Node::Hardlink(first) if is_under(first, gone) && !is_under(p, gone) => {
                Some((p.clone(), first.clone()))
            }
            _ => None,
        })
        .collect();
    let files: BTreeMap<String, Node> = links
        .iter()
        .filter_map(|(_, f)| tree.get(f).map(|n| (f.clone(), n.clone())))
        .collect();
    relink(tree, links, |first| files.get(first).cloned());
}

/// A file tree: relative path → node. Parents of every path are directories.
pub type Tree = BTreeMap<String, Node>;

/// What a layer's tar entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A node.
    Node(Node),
    /// A hardlink to another path of the tree.
    Hardlink(String),
}

/// One tar entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name in the tar.
    pub name: String,
    /// Its content (ignored for whiteout names).
    pub body: Body,
}

/// An OCI layer: its tar entries, in order.
pub type Layer = Vec<Entry>;

/// Why an operation is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A layer entry name that would leave the tree (absolute, or with `..`).
    EscapingName(String),
    /// A layer entry under a path that is a symlink in the tree.
    ThroughSymlink(String),
    /// A hardlink whose target is not a file of the tree.
    BadHardlink(String, String),
    /// ENOENT.
    NotFound(String),
    /// EEXIST.
    Exists(String),
    /// ENOTDIR: a parent is not a directory.
    NotADirectory(String),
    /// EISDIR.
    IsADirectory(String),
    /// ENOTEMPTY.
    NotEmpty(String),
    /// EXDEV: renaming a directory that a lower layer has.
    CrossDevice(String),
    /// EINVAL: moving a directory into itself.
    Invalid(String),
    /// ENODATA: removing an extended attribute the node does not have.
    NoAttribute(String),
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// The parent of a relative path ("" for the root's children).
pub fn parent(path: &str) -> &str {
    path.rfind('/').map(|i| &path[..i]).unwrap_or("")
}

fn name_of(path: &str) -> &str {
    path.rfind('/').map(|i| &path[i + 1..]).unwrap_or(path)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Whether `path` is `dir` or below it.
pub fn is_under(path: &str, dir: &str) -> bool {
    path == dir || path.starts_with(&format!("{dir}/"))
}

/// Removes `path` and everything below it.
pub fn remove_subtree(tree: &mut Tree, path: &str) {
    tree.retain(|p, _| !is_under(p, path));
}

fn clean_name(name: &str) -> Result<String, Refusal> {
    let trimmed = name.trim_start_matches("./").trim_end_matches('/');
    if name.starts_with('/') || trimmed.split('/').any(|c| c == "..") {
        return Err(Refusal::EscapingName(name.into()));
    }
    Ok(trimmed
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/"))
}

fn check_parents(tree: &Tree, path: &str) -> Result<(), Refusal> {
    let mut acc = String::new();
    for comp in path
        .split('/')
        .take(path.split('/').count().saturating_sub(1))
    {
        acc = join(&acc, comp);
        if let Some(Node::Symlink(_)) = tree.get(&acc) {
            return Err(Refusal::ThroughSymlink(path.into()));
        }
    }
    Ok(())
}

/// Makes the parents of `path` directories, as unpacking a layer creates the
/// ones its archive implies (0755, no extended attributes): a non-directory
/// there is replaced, and a directory this layer has not made yet (`made`)
/// takes the implied one's attributes (overlayfs shows a directory's
/// attributes from the topmost layer holding it; an explicit entry later in
/// the layer then sets its own).
fn make_parents(tree: &mut Tree, path: &str, made: &mut std::collections::BTreeSet<String>) {
    let mut acc = String::new();
    let comps: Vec<&str> = path.split('/').collect();
    for comp in &comps[..comps.len().saturating_sub(1)] {
        acc = join(&acc, comp);
        match tree.get(&acc) {
            Some(Node::Dir { .. }) if made.contains(&acc) => {}
            Some(Node::Dir { .. }) => {
                tree.insert(acc.clone(), Node::dir(0o755));
            }
            _ => {
                detach(tree, &acc);
                remove_subtree(tree, &acc);
                tree.insert(acc.clone(), Node::dir(0o755));
            }
        }
        made.insert(acc.clone());
    }
}

/// Applies a layer to a tree (`tree` is unchanged on a refusal).
pub fn apply(tree: &Tree, layer: &Layer) -> Result<Tree, Refusal> {
    let mut out = tree.clone();
    let mut adds = Vec::new();
    // The directories this layer has made so far.
    let mut made = std::collections::BTreeSet::new();
    // An entry under a name that an earlier entry of this layer made a
    // non-directory has no parent to go in (ENOTDIR, as tar says). A whiteout
    // is such a non-directory unless this layer put something there before
    // (which it then keeps).
    let mut is_dir: BTreeMap<String, bool> = BTreeMap::new();
    for e in layer {
        let path = clean_name(&e.name)?;
        let mut dir = parent(&path);
        while !dir.is_empty() {
            match is_dir.get(dir) {
                Some(false) => return Err(Refusal::NotADirectory(e.name.clone())),
                Some(true) => {}
                None => {
                    is_dir.insert(dir.to_string(), true);
                }
            }
            dir = parent(dir);
        }
        let name = name_of(&path);
        if let Some(hidden) = name.strip_prefix(WHITEOUT).filter(|_| name != OPAQUE) {
            is_dir.entry(join(parent(&path), hidden)).or_insert(false);
        } else if name != OPAQUE {
            is_dir.insert(path, matches!(e.body, Body::Node(Node::Dir { .. })));
        }
    }
    for e in layer {
        let path = clean_name(&e.name)?;
        let (dir, name) = (parent(&path), name_of(&path));
        if name == OPAQUE || name.starts_with(WHITEOUT) {
            check_parents(&out, &path)?;
        }
        if name == OPAQUE {
            if dir.is_empty() {
                out.clear();
            } else {
                let children: Vec<String> = out
                    .keys()
                    .filter(|p| *p != dir && is_under(p, dir))
                    .cloned()
                    .collect();
                for c in &children {
                    detach(&mut out, c);
                }
                out.retain(|p, _| p == dir || !is_under(p, dir));
            }
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            detach(&mut out, &join(dir, hidden));
            remove_subtree(&mut out, &join(dir, hidden));
        }
        let marker = name == OPAQUE || name.starts_with(WHITEOUT);
        adds.push((path, (!marker).then_some(&e.body)));
    }
    // The deletions are made; then what the layer holds, in order (a marker
    // implies its directory, as any entry does). Adds are checked as they
    // come: an earlier entry may have replaced a symlink by a directory.
    let mut added = std::collections::BTreeSet::new();
    for (path, body) in adds {
        let Some(body) = body else {
            make_parents(&mut out, &path, &mut made);
            continue;
        };
        check_parents(&out, &path)?;
        let node = match body {
            Body::Node(n) => n.clone(),
            Body::Hardlink(target) => {
                let t = clean_name(target)?;
                // Each layer is unpacked alone: a link can only name a file
                // the layer itself holds.
                if !added.contains(&t) {
                    return Err(Refusal::BadHardlink(path, target.clone()));
                }
                let first = match out.get(&t) {
                    Some(Node::File { .. }) => t,
                    Some(Node::Hardlink(first)) => first.clone(),
                    _ => return Err(Refusal::BadHardlink(path, target.clone())),
                };
                // A link may not replace the file it names, or a directory holding it.
                if is_under(&first, &path) {
                    return Err(Refusal::BadHardlink(path, target.clone()));
                }
                Node::Hardlink(first)
            }
        };
        make_parents(&mut out, &path, &mut made);
        let mut node = node;
        match (&mut node, out.get(&path)) {
            // A directory kept: one this layer made keeps its attributes
            // too, the new entry's added over them.
            (Node::Dir { xattrs, .. }, Some(Node::Dir { xattrs: old, .. })) => {
                if made.contains(&path) {
                    let mut all = old.clone();
                    all.append(xattrs);
                    *xattrs = all;
                }
            }
            _ => {
                detach(&mut out, &path);
                remove_subtree(&mut out, &path);
            }
        }
        if matches!(node, Node::Dir { .. }) {
            made.insert(path.clone());
        } else {
            made.retain(|p| !is_under(p, &path));
        }
        // Making the link's parents may have replaced the file it names.
        if let Node::Hardlink(first) = &node
            && !matches!(out.get(first), Some(Node::File { .. }))
        {
            return Err(Refusal::BadHardlink(path, first.clone()));
        }
        added.insert(path.clone());
        out.insert(path, node);
    }
    Ok(out)
}

/// Bytes of file content in a tree, each file once (another name of a file
/// adds nothing): what the tree's files take, as Docker's SIZE counts a layer.
pub fn content_bytes(tree: &Tree) -> u64 {
    tree.values()
        .map(|n| match n {
            Node::File { content, .. } => content.len() as u64,
            _ => 0,
        })
        .sum()
}

/// A layer's size: the bytes of the files it holds once unpacked on its own
/// (a file an entry of the same layer replaced counts no more).
pub fn layer_size(layer: &Layer) -> Result<u64, Refusal> {
    apply(&Tree::new(), layer).map(|t| content_bytes(&t))
}

/// The merged view of layers applied bottom first.
pub fn merged(layers: &[Layer]) -> Result<Tree, Refusal> {
    layers.iter().try_fold(Tree::new(), |t, l| apply(&t, l))
}

/// A layer that turns `lower` into `upper`: whiteouts for what went, entries for
/// what is new or changed (parents first, so a replaced directory comes back).
pub fn diff(lower: &Tree, upper: &Tree) -> Layer {
    let mut layer = Vec::new();
    for path in lower.keys().filter(|p| !upper.contains_key(*p)) {
        // One whiteout for the topmost removed path covers what is below it.
        let dir = parent(path);
        if dir.is_empty() || upper.contains_key(dir) {
            layer.push(Entry {
                name: join(dir, &format!("{WHITEOUT}{}", name_of(path))),
                body: Body::Node(Node::dir(0)),
            });
        }
    }
    let changed: std::collections::BTreeSet<&String> = upper
        .iter()
        .filter(|(p, n)| lower.get(*p) != Some(*n))
        .map(|(p, _)| p)
        .collect();
    // Every entry's directories come too (as an upper directory holds the
    // parents of what it changed): a directory the layer only implied would
    // take the implied mode.
    let mut wanted: std::collections::BTreeSet<&String> = changed.clone();
    let named: Vec<String> = layer
        .iter()
        .map(|e| e.name.clone())
        .chain(changed.iter().map(|p| p.to_string()))
        .collect();
    for name in &named {
        let mut dir = parent(name);
        while !dir.is_empty() {
            if let Some((p, _)) = upper.get_key_value(dir) {
                wanted.insert(p);
            }
            dir = parent(dir);
        }
    }
    for (path, node) in upper
        .iter()
        .filter(|(p, n)| wanted.contains(p) && !matches!(n, Node::Hardlink(_)))
    {
        layer.push(Entry {
            name: path.clone(),
            body: Body::Node(node.clone()),
        });
    }
    // Links after the files they name; again when that file is written anew.
    for (path, node) in upper {
        if let Node::Hardlink(first) = node
            && (changed.contains(path) || changed.contains(first))
        {
            layer.push(Entry {
                name: path.clone(),
                body: Body::Hardlink(first.clone()),
            });
        }
    }
    layer
}

#[cfg(test)]
mod tests;
