//! A container's writes on the merged view, recorded in its upper layer.

use super::*;

/// A container: its image's layers (bottom first, already applied as `lower`)
/// and its upper layer, in overlayfs' own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The merged image layers.
    pub lower: Tree,
    /// The upper directory: nodes, `None` for a whiteout (a 0/0 char device).
    pub upper: BTreeMap<String, Option<Node>>,
    /// Upper directories marked opaque (trusted.overlay.opaque=y).
    pub opaque: std::collections::BTreeSet<String>,
}

impl Container {
    /// A container on `lower` with an empty upper layer.
    pub fn new(lower: Tree) -> Self {
        Container {
            lower,
            upper: BTreeMap::new(),
            opaque: Default::default(),
        }
    }

    /// The size of the layer a commit makes of the upper directory: the
    /// bytes of the files in it.
    pub fn upper_size(&self) -> u64 {
        self.upper
            .values()
            .map(|n| match n {
                Some(Node::File { content, .. }) => content.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// What the container sees: lower, then the upper's whiteouts, opaque
    /// directories and nodes, as overlayfs merges them.
    pub fn view(&self) -> Tree {
        let mut t = self.lower.clone();
        for dir in &self.opaque {
            t.retain(|p, _| p == dir || !is_under(p, dir));
        }
        for (path, node) in &self.upper {
            match node {
                None => remove_subtree(&mut t, path),
                Some(n) => {
                    if !matches!(n, Node::Dir { .. }) {
                        remove_subtree(&mut t, path);
                    }
                    t.insert(path.clone(), n.clone());
                }
            }
        }
        // A lower file written or deleted through one name was copied up (or
        // whited out) alone: its other names keep the lower file.
        break_links(&mut t, &self.lower, &self.upper.keys().cloned().collect());
        t
    }

    /// The directories on the way to `path` exist (ENOENT) and are
    /// directories (ENOTDIR), looked up from the root down as the kernel does.
    fn need_parent_dir(&self, view: &Tree, path: &str) -> Result<(), Refusal> {
        let mut acc = String::new();
        let comps: Vec<&str> = path.split('/').collect();
        for comp in &comps[..comps.len().saturating_sub(1)] {
            acc = join(&acc, comp);
            match view.get(&acc) {
                Some(Node::Dir { .. }) => {}
                Some(_) => return Err(Refusal::NotADirectory(path.into())),
                None => return Err(Refusal::NotFound(acc)),
            }
        }
        Ok(())
    }

    /// Whether the layers have the name `path` where the container can reach
    /// it: no opaque directory or whiteout of the upper layer above it hides
    /// it. Removing such a name leaves a whiteout; a directory made there is
    /// opaque.
    pub fn lower_has(&self, path: &str) -> bool {
        if !self.lower.contains_key(path) {
            return false;
        }
        let mut p = parent(path);
        loop {
            if p.is_empty() {
                return true;
            }
            if self.opaque.contains(p) || matches!(self.upper.get(p), Some(None)) {
                return false;
            }
            p = parent(p);
        }
    }

    /// Whether overlayfs merges the directory at `path` with a lower one
    /// (which then cannot be renamed): the layers have it, and the upper
    /// layer neither replaced nor made it opaque.
    pub fn merged_dir(&self, path: &str) -> bool {
        self.lower_has(path)
            && !self.opaque.contains(path)
            && !matches!(self.upper.get(path), Some(None))
    }

    /// Copy-up: the parent directories of `path` into the upper layer.
    fn copy_up_parents(&mut self, view: &Tree, path: &str) {
        let mut dir = parent(path);
        while !dir.is_empty() {
            if !matches!(self.upper.get(dir), Some(Some(_))) {
                self.upper.insert(dir.to_string(), view.get(dir).cloned());
            }
            dir = parent(dir);
        }
    }

    /// Puts `node` at `path` in the upper layer.
    fn put(&mut self, view: &Tree, path: &str, node: Node) {
        self.copy_up_parents(view, path);
        let was_whiteout = matches!(self.upper.get(path), Some(None));
        if matches!(node, Node::Dir { .. }) && (was_whiteout || self.lower_has(path)) {
            // A directory made where a lower one was deleted must hide its contents.
            self.opaque.insert(path.to_string());
        }
        self.upper
            .retain(|p, _| !(p != path && is_under(p, path)) || matches!(node, Node::Dir { .. }));
        self.upper.insert(path.to_string(), Some(node));
    }

    /// Removes `path` from the view: a whiteout if a lower layer has it.
    fn drop_path(&mut self, view: &Tree, path: &str) {
        let whiteout = self.lower_has(path);
        self.upper.retain(|p, _| !is_under(p, path));
        self.opaque.retain(|p| !is_under(p, path));
        if whiteout {
            self.copy_up_parents(view, path);
            self.upper.insert(path.to_string(), None);
        }
    }

    /// Creates or truncates a file and writes `content` (an existing file
    /// keeps its mode and extended attributes).
    pub fn write(&mut self, path: &str, content: &[u8]) -> Result<(), Refusal> {
        let view = self.view();
        self.need_parent_dir(&view, path)?;
        let (node, new) = match resolve(&view, path) {
            Some(Node::Dir { .. }) => return Err(Refusal::IsADirectory(path.into())),
            Some(file @ Node::File { .. }) => {
                let mut file = file.clone();
                if let Node::File {
                    content: c, mtime, ..
                } = &mut file
                {
                    *c = content.to_vec();
                    *mtime = None;
                }
                (file, false)
            }
            _ => (Node::file(content, 0o644), true),
        };
        self.put(&view, path, node);
        if new {
            self.changed_dir(path);
        }
        Ok(())
    }

    /// Appends to an existing file (copying it up first).
    pub fn append(&mut self, path: &str, more: &[u8]) -> Result<(), Refusal> {
        let view = self.view();
        self.need_parent_dir(&view, path)?;
        match resolve(&view, path) {
            Some(file @ Node::File { .. }) => {
                let mut file = file.clone();
                if let Node::File { content, mtime, .. } = &mut file {
                    content.extend_from_slice(more);
                    *mtime = None;
                }
                self.put(&view, path, file);
                Ok(())
            }
            Some(Node::Dir { .. }) => Err(Refusal::IsADirectory(path.into())),
            _ => Err(Refusal::NotFound(path.into())),
        }
    }

    /// A name was made, removed or renamed in the directory holding `path`
    /// (which is in the upper layer by then): its time is the change's.
    fn changed_dir(&mut self, path: &str) {
        if let Some(Some(Node::Dir { mtime, .. })) = self.upper.get_mut(parent(path)) {
            *mtime = None;
        }
    }

    /// What an image committed from this container holds: what it sees, the
    /// upper layer's files and directories with their times in whole seconds
    /// (a tar header's).
    pub fn committed(&self) -> Tree {
        let mut t = self.view();
        for (p, n) in self
            .upper
            .iter()
            .filter_map(|(p, n)| Some((p, n.as_ref()?)))
        {
            if let (Some((secs, _)), Some(node)) = (n.mtime(), t.get_mut(p)) {
                *node = node.clone().with_mtime(Some((secs, 0)));
            }
        }
        t
    }

    /// Changes the node at `path` in place, as chmod(2) and setxattr(2) do:
    /// copy-up first (another name of a file is the file: its copy-up is
    /// that name alone). `change` may refuse, and then nothing is copied up.
    fn change(
        &mut self,
        path: &str,
        change: impl FnOnce(Node) -> Result<Node, Refusal>,
    ) -> Result<(), Refusal> {
        let view = self.view();
        self.need_parent_dir(&view, path)?;
        let node = resolve(&view, path)
            .cloned()
            .ok_or_else(|| Refusal::NotFound(path.into()))?;
        let node = change(node)?;
        self.copy_up_parents(&view, path);
        self.upper.insert(path.to_string(), Some(node));
        Ok(())
    }

    /// chmod (copy-up first).
    pub fn chmod(&mut self, path: &str, new_mode: u32) -> Result<(), Refusal> {
        self.change(path, |mut node| {
            if let Node::File { mode, .. } | Node::Dir { mode, .. } = &mut node {
                *mode = new_mode;
            }
            Ok(node)
        })
    }

    /// lchown(2) of a file or directory (copy-up first; its time stays).
    pub fn chown(&mut self, path: &str, uid: u32, gid: u32) -> Result<(), Refusal> {
        self.change(path, |mut node| {
            if let Node::File { owner, .. } | Node::Dir { owner, .. } = &mut node {
                *owner = (uid, gid);
            }
            Ok(node)
        })
    }

    /// setxattr(2) on a file or directory (copy-up first). Other kinds are
    /// not described: the kernel refuses user attributes on them, and
    /// overlayfs' handling of trusted ones on symlinks is its own.
    pub fn set_xattr(&mut self, path: &str, name: &str, value: &[u8]) -> Result<(), Refusal> {
        self.change(path, |mut node| {
            if let Node::File { xattrs, .. } | Node::Dir { xattrs, .. } = &mut node {
                xattrs.insert(name.to_string(), value.to_vec());
            }
            Ok(node)
        })
    }

    /// removexattr(2): ENODATA when the node does not have it (and then
    /// overlayfs copies nothing up).
    pub fn remove_xattr(&mut self, path: &str, name: &str) -> Result<(), Refusal> {
        self.change(path, |mut node| {
            match &mut node {
                Node::File { xattrs, .. } | Node::Dir { xattrs, .. } => {
                    if xattrs.remove(name).is_none() {
                        return Err(Refusal::NoAttribute(path.into()));
                    }
                }
                _ => return Err(Refusal::NoAttribute(path.into())),
            }
            Ok(node)
        })
    }

    /// mkdir.
    pub fn mkdir(&mut self, path: &str) -> Result<(), Refusal> {
        let view = self.view();
        self.need_parent_dir(&view, path)?;
        if view.contains_key(path) {
            return Err(Refusal::Exists(path.into()));
        }
        self.put(&view, path, Node::dir(0o755));
        self.changed_dir(path);
        Ok(())
    }

    /// symlink.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), Refusal> {
        let view = self.view();
        self.need_parent_dir(&view, path)?;
        if view.contains_key(path) {
            return Err(Refusal::Exists(path.into()));
        }
        self.put(&view, path, Node::Symlink(target.into()));
        self.changed_dir(path);
        Ok(())
    }

    /// unlink (not a directory).
    pub fn remove(&mut self, path: &str) -> Result<(), Refusal> {
        let view = self.view();
        self.need_parent_dir(&view, path)?;
        match view.get(path) {
            None => Err(Refusal::NotFound(path.into())),
            Some(Node::Dir { .. }) => Err(Refusal::IsADirectory(path.into())),
            Some(_) => {
                self.drop_path(&view, path);
                self.changed_dir(path);
                Ok(())
            }
        }
    }

    /// rmdir (empty directories only).
    pub fn rmdir(&mut self, path: &str) -> Result<(), Refusal> {
        let view = self.view();
        self.need_parent_dir(&view, path)?;
        match view.get(path) {
            None => Err(Refusal::NotFound(path.into())),
            Some(Node::Dir { .. }) if view.keys().any(|p| p != path && is_under(p, path)) => {
                Err(Refusal::NotEmpty(path.into()))
            }
            Some(Node::Dir { .. }) => {
                self.drop_path(&view, path);
                self.changed_dir(path);
                Ok(())
            }
            Some(_) => Err(Refusal::NotADirectory(path.into())),
        }
    }

    /// rename(2), its checks in the kernel's order: both parents, the source,
    /// a directory moved below itself (EINVAL) or onto one of its parents
    /// (ENOTEMPTY), the kinds of source and target; then overlayfs' own: a
    /// directory a lower layer has cannot move (EXDEV, without redirect_dir).
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), Refusal> {
        let view = self.view();
        self.need_parent_dir(&view, from)?;
        self.need_parent_dir(&view, to)?;
        let node = resolve(&view, from)
            .cloned()
            .ok_or_else(|| Refusal::NotFound(from.into()))?;
        if to == from {
            return Ok(());
        }
        if is_under(to, from) {
            return Err(Refusal::Invalid(to.into()));
        }
        if is_under(from, to) {
            return Err(Refusal::NotEmpty(to.into()));
        }
        let is_dir = matches!(node, Node::Dir { .. });
        match view.get(to) {
            Some(Node::Dir { .. }) if !is_dir => return Err(Refusal::IsADirectory(to.into())),
            Some(n) if is_dir && !matches!(n, Node::Dir { .. }) => {
                return Err(Refusal::NotADirectory(to.into()));
            }
            _ => {}
        }
        if is_dir {
            if self.merged_dir(from) {
                return Err(Refusal::CrossDevice(from.into()));
            }
            if view.keys().any(|p| p != to && is_under(p, to)) {
                return Err(Refusal::NotEmpty(to.into()));
            }
            let moved: Vec<(String, Node)> = view
                .keys()
                .filter(|p| is_under(p, from))
                .filter_map(|p| {
                    resolve(&view, p).map(|n| (format!("{to}{}", &p[from.len()..]), n.clone()))
                })
                .collect();
            self.drop_path(&view, from);
            let view2 = self.view();
            self.drop_path(&view2, to);
            for (p, n) in moved {
                let v = self.view();
                self.put(&v, &p, n);
            }
            // Moved into a directory merged with a lower one (the root is),
            // it is marked opaque: whatever the layers have under its new
            // name must stay hidden.
            let into = parent(to);
            if into.is_empty() || self.merged_dir(into) {
                self.opaque.insert(to.to_string());
            }
            self.changed_dir(from);
            self.changed_dir(to);
            return Ok(());
        }
        self.drop_path(&view, from);
        let v = self.view();
        self.put(&v, to, node);
        self.changed_dir(from);
        self.changed_dir(to);
        Ok(())
    }
}
