//! Every key the recipe parser accepts, read from the schema's own serde definitions (not a
//! list kept by hand): what docs/reference/recipes.md must document, held by a test.

use super::*;
use serde::de::{self, Deserializer, Visitor};

/// A deserializer that answers nothing and records the field names of the struct asked for.
struct Fields<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for Fields<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The TOML keys of struct `T` (serde's names: kebab-case, renames applied).
fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut names));
    names
}

/// Every key path a recipe may hold, dotted (`source.debian.package`); the keys of maps are
/// spelled `NAME` or `KEY` (`env.NAME`, `versions.KEY.version`). Tables of structs are
/// listed by their keys, not themselves.
pub(crate) fn accepted_keys() -> Vec<String> {
    // The struct behind each table; a map's entries are leaves (`env.NAME`).
    fn table(path: &str) -> Option<fn() -> &'static [&'static str]> {
        Some(match path {
            "" => fields::<Recipe>,
            "source" | "versions.KEY.source" => fields::<SourcePin>,
            "source.debian" => fields::<DebianFile>,
            "versions.KEY" => fields::<OtherVersion>,
            "build" => fields::<Build>,
            "kconfig" => fields::<Kconfig>,
            "rootfs" => fields::<RootfsSpec>,
            "image" => fields::<ImageSpec>,
            "oci" => fields::<OciSpec>,
            "oci.file" | "oci.referrer.file" => fields::<OciFile>,
            "oci.referrer" => fields::<OciReferrer>,
            "initramfs" => fields::<InitramfsSpec>,
            "uefi" => fields::<UefiSpec>,
            "iso" => fields::<IsoSpec>,
            _ => return None,
        })
    }
    fn map_key(path: &str) -> Option<&'static str> {
        match path {
            "env" | "arch" => Some("NAME"),
            "versions" | "oci.annotations" => Some("KEY"),
            _ => None,
        }
    }
    fn walk(path: &str, out: &mut Vec<String>) {
        let fields = table(path).expect("a table")();
        for f in fields {
            let p = if path.is_empty() { f.to_string() } else { format!("{path}.{f}") };
            if p == "versions.KEY.source" {
                // The same keys as `[[source]]`.
                out.push(p);
            } else if table(&p).is_some() {
                walk(&p, out);
            } else if let Some(k) = map_key(&p) {
                let entry = format!("{p}.{k}");
                if table(&entry).is_some() {
                    walk(&entry, out);
                } else {
                    out.push(entry);
                }
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk("", &mut out);
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_read_from_serde() {
        let keys = accepted_keys();
        for k in ["name", "source.sha256", "source.debian.snapshot", "oci.referrer.file.media-type"]
        {
            assert!(keys.contains(&k.to_string()), "{k}: {keys:?}");
        }
        assert!(keys.contains(&"env.NAME".to_string()) && keys.contains(&"arch.NAME".to_string()));
        assert!(!keys.iter().any(|k| k == "source" || k == "build"), "{keys:?}");
    }

    /// docs/reference/recipes.md documents every key the parser accepts, as a heading
    /// ``### `KEY` ``, and no key it does not (a table's heading, `oci.file`, may stand above
    /// its keys).
    #[test]
    fn the_recipe_reference_documents_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reference/recipes.md");
        let text = std::fs::read_to_string(&path).unwrap();
        let documented: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("### `"))
            .filter_map(|l| l.split('`').next())
            .map(String::from)
            .collect();
        let keys = accepted_keys();
        let missing: Vec<&String> = keys.iter().filter(|k| !documented.contains(k)).collect();
        let unknown: Vec<&String> = documented
            .iter()
            .filter(|d| !keys.contains(d) && !keys.iter().any(|k| k.starts_with(&format!("{d}."))))
            .collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "{}: undocumented keys {missing:?}; documented keys the parser does not accept {unknown:?}",
            path.display()
        );
    }
}
