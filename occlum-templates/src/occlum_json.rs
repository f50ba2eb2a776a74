//! `Occlum.json`: the built-in template (`templates/Occlum.json`) with the input's values.

use std::path::{Component, Path};

use serde_json::{json, Value};

use crate::{invalid, RenderError, RenderInput, DEFAULT_ENTRY_POINT};

/// One mebibyte; Occlum writes sizes as "<n>MB" meaning MiB.
pub const MIB: u64 = 1024 * 1024;

const TEMPLATE: &str = include_str!("../templates/Occlum.json");
/// The target of the template's store mount, replaced by the input's mount point.
const TEMPLATE_STORE_TARGET: &str = "/var/lib/encc";
/// Mount points the template already uses.
const RESERVED_TARGETS: [&str; 4] = ["/", "/host", "/proc", "/dev"];

const MIN_USER_SPACE: u64 = 512 * MIB;
const MAX_USER_SPACE: u64 = 64 * 1024 * MIB;
const MIN_THREADS: u32 = 16;
const MAX_THREADS: u32 = 4096;

pub(crate) fn render(input: &RenderInput) -> Result<Value, RenderError> {
    let sizes = Sizes::for_input(input)?;
    let entry_point = input.entry_point.as_deref().unwrap_or(DEFAULT_ENTRY_POINT);
    enclave_path("entry_point", Path::new(entry_point))?;
    let untrusted = env_allowlist(&input.env_allowlist)?;
    let mut default_env = vec![format!("{}=yes", OCCLUM)];
    default_env.extend(trusted_env(&input.trusted_env)?);
    let store_target = enclave_path("store_mount_point", &input.store_mount_point)?;
    if RESERVED_TARGETS.contains(&store_target) {
        return Err(invalid(
            "store_mount_point",
            format!("{store_target} is already mounted"),
        ));
    }
    let store_source = host_dir("store_host_dir", &input.store_host_dir)?;

    let mut occlum: Value = serde_json::from_str(TEMPLATE).map_err(RenderError::Template)?;
    set(
        &mut occlum,
        "/resource_limits/user_space_size",
        mb(input.user_space_size),
    )?;
    set(
        &mut occlum,
        "/resource_limits/kernel_space_heap_size",
        mb(sizes.kernel_heap),
    )?;
    set(
        &mut occlum,
        "/resource_limits/max_num_of_threads",
        json!(input.max_threads),
    )?;
    set(&mut occlum, "/process/default_stack_size", mb(sizes.stack))?;
    set(&mut occlum, "/process/default_heap_size", mb(sizes.heap))?;
    set(&mut occlum, "/process/default_mmap_size", mb(sizes.mmap))?;
    set(&mut occlum, "/entry_points", json!([entry_point]))?;
    set(&mut occlum, "/env/default", json!(default_env))?;
    set(&mut occlum, "/env/untrusted", json!(untrusted))?;
    set(&mut occlum, "/metadata/debuggable", json!(input.debuggable))?;
    set(&mut occlum, "/metadata/product_id", json!(input.product_id))?;
    set(
        &mut occlum,
        "/metadata/version_number",
        json!(input.version_number),
    )?;

    let store = occlum
        .pointer_mut("/mount")
        .and_then(Value::as_array_mut)
        .and_then(|mounts| {
            mounts
                .iter_mut()
                .find(|m| m["target"] == TEMPLATE_STORE_TARGET && m["type"] == "hostfs")
        })
        .ok_or(RenderError::TemplateField("store hostfs mount"))?;
    store["target"] = json!(store_target);
    store["source"] = json!(store_source);
    Ok(occlum)
}

const OCCLUM: &str = "OCCLUM";

/// The sizes derived from `user_space_size`. Each process reserves its stack and heap in the
/// user space, so both stay well below it; `default_mmap_size` is obsolete in Occlum (kept
/// because its parser requires it).
struct Sizes {
    kernel_heap: u64,
    stack: u64,
    heap: u64,
    mmap: u64,
}

impl Sizes {
    fn for_input(input: &RenderInput) -> Result<Self, RenderError> {
        let user = input.user_space_size;
        if !user.is_multiple_of(MIB) || !(MIN_USER_SPACE..=MAX_USER_SPACE).contains(&user) {
            return Err(invalid(
                "user_space_size",
                format!("{user} bytes is not a whole number of MiB between 512 MiB and 64 GiB"),
            ));
        }
        if !(MIN_THREADS..=MAX_THREADS).contains(&input.max_threads) {
            return Err(invalid(
                "max_threads",
                format!(
                    "{} is not between {MIN_THREADS} and {MAX_THREADS}",
                    input.max_threads
                ),
            ));
        }
        let round = |bytes: u64| bytes / MIB * MIB;
        Ok(Self {
            kernel_heap: round((user / 16).clamp(64 * MIB, 512 * MIB)),
            stack: 8 * MIB,
            heap: round((user / 8).clamp(32 * MIB, 1024 * MIB)),
            mmap: round(user / 2),
        })
    }
}

fn mb(bytes: u64) -> Value {
    json!(format!("{}MB", bytes / MIB))
}

fn set(occlum: &mut Value, pointer: &'static str, value: Value) -> Result<(), RenderError> {
    let slot = occlum
        .pointer_mut(pointer)
        .ok_or(RenderError::TemplateField(pointer))?;
    *slot = value;
    Ok(())
}

/// An absolute, normalized, UTF-8 path inside the enclave.
pub(crate) fn enclave_path<'a>(
    field: &'static str,
    path: &'a Path,
) -> Result<&'a str, RenderError> {
    let text = path
        .to_str()
        .ok_or_else(|| invalid(field, format!("{path:?} is not UTF-8")))?;
    let normal = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !path.is_absolute()
        || !normal
        || text.contains('\0')
        || (text.len() > 1 && text.ends_with('/'))
    {
        return Err(invalid(
            field,
            format!("{text:?} is not an absolute, normalized path"),
        ));
    }
    Ok(text)
}

/// An absolute UTF-8 host directory.
fn host_dir<'a>(field: &'static str, path: &'a Path) -> Result<&'a str, RenderError> {
    match path.to_str() {
        Some(text) if path.is_absolute() && !text.contains('\0') => Ok(text),
        _ => Err(invalid(
            field,
            format!("{path:?} is not an absolute UTF-8 path"),
        )),
    }
}

fn env_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn env_allowlist(names: &[String]) -> Result<Vec<&str>, RenderError> {
    let mut seen = Vec::with_capacity(names.len());
    for name in names {
        if !env_name_ok(name) || name == OCCLUM {
            return Err(invalid(
                "env_allowlist",
                format!("{name:?} is not an allowed variable name"),
            ));
        }
        if seen.contains(&name.as_str()) {
            return Err(invalid("env_allowlist", format!("{name} is listed twice")));
        }
        seen.push(name.as_str());
    }
    Ok(seen)
}

fn trusted_env(entries: &[String]) -> Result<Vec<String>, RenderError> {
    entries
        .iter()
        .map(|entry| {
            let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
            if !entry.contains('=') || !env_name_ok(name) || name == OCCLUM || value.contains('\0')
            {
                // Only the name: values may be sensitive.
                return Err(invalid(
                    "trusted_env",
                    format!("{name:?} is not a NAME=value entry"),
                ));
            }
            Ok(entry.clone())
        })
        .collect()
}
