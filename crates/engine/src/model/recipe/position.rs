//! Where a key path (`source[1].sha256`, `rootfs.install[2]`) is in a recipe's text, from the
//! TOML parser's own spans: validation errors point at the value they are about, never at the
//! first place the same text appears (which could be a comment or another key).

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// A path of keys and indices into a recipe, for [`of`].
pub(crate) type KeyPath = Vec<Step>;

/// `key("source")`: a step by key.
pub(crate) fn key(k: &str) -> Step {
    Step::Key(k.to_string())
}

/// `index(2)`: a step by array index.
pub(crate) fn index(i: usize) -> Step {
    Step::Index(i)
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}

/// A place in the parsed document: toml_edit keeps top-level tables, array elements and
/// tables of an array as different types.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Value(&'a toml_edit::Value),
    Table(&'a toml_edit::Table),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<std::ops::Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
            Node::Table(t) => t.span(),
        }
    }

    /// The child at `step`, with the span of its key when it has one.
    fn child(self, step: &Step) -> Option<(Node<'a>, Option<std::ops::Range<usize>>)> {
        use toml_edit::{Item, Value};
        let table = match self {
            Node::Item(Item::Table(t)) | Node::Table(t) => Some(t),
            _ => None,
        };
        let inline = match self {
            Node::Item(Item::Value(Value::InlineTable(t))) | Node::Value(Value::InlineTable(t)) => {
                Some(t)
            }
            _ => None,
        };
        match step {
            Step::Key(k) => {
                if let Some(t) = table {
                    return t.get(k).map(|v| (Node::Item(v), t.key(k).and_then(|key| key.span())));
                }
                let t = inline?;
                t.get(k).map(|v| (Node::Value(v), t.key(k).and_then(|key| key.span())))
            }
            Step::Index(i) => match self {
                Node::Item(Item::ArrayOfTables(a)) => a.get(*i).map(|t| (Node::Table(t), None)),
                Node::Item(Item::Value(Value::Array(a))) | Node::Value(Value::Array(a)) => {
                    a.get(*i).map(|v| (Node::Value(v), None))
                }
                _ => None,
            },
        }
    }
}

/// The line and column of the value at `path` in `text`: as deep as the path can be followed
/// (a missing key points at its table), the document's start when nothing is found.
pub(crate) fn of(text: &str, path: &[Step]) -> (usize, usize) {
    let Ok(doc) = toml_edit::ImDocument::parse(text) else { return (1, 1) };
    let mut node = Node::Item(doc.as_item());
    let mut span = None;
    for step in path {
        let Some((child, key_span)) = node.child(step) else { break };
        node = child;
        span = child.span().or(key_span).or(span);
    }
    span.map(|s| line_col(text, s.start)).unwrap_or((1, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_point_at_their_values_not_at_the_first_match() {
        let text = "name = \"t\"\n# sha256 = \"in a comment\"\n[[source]]\nfile = \"a\"\nsha256 = \"x\"\n[[source]]\nfile = \"b\"\nsha256 = \"x\"\n[rootfs]\ninstall = [\"a\", \"b\"]\ndebian = { package = \"p\" }\n";
        assert_eq!(of(text, &[key("source"), index(1), key("sha256")]), (8, 10));
        assert_eq!(of(text, &[key("source"), index(0), key("sha256")]), (5, 10));
        assert_eq!(of(text, &[key("rootfs"), key("install"), index(1)]), (10, 17));
        assert_eq!(of(text, &[key("rootfs"), key("debian"), key("package")]), (11, 22));
        // A key that is not there points at the deepest place found.
        assert_eq!(of(text, &[key("rootfs"), key("nothing")]).0, 9);
        assert_eq!(of(text, &[key("nothing")]), (1, 1));
    }
}
