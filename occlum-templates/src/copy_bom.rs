//! The initfs bom in Occlum's copy_bom format (`targets: - target: DIR  copy: - files:`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{
    invalid, RenderError, RenderInput, BOOT_CONFIG_PATH, CA_BUNDLE_PATH, EXEC_PATH, INIT_PATH,
};

/// A copy_bom file (the subset encc writes).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Bom {
    pub targets: Vec<Target>,
}

/// One destination directory.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Target {
    pub target: String,
    pub copy: Vec<Copy>,
}

/// Files copied into the target.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Copy {
    pub files: Vec<File>,
}

/// One file: its host path, its name in the target and whether copy_bom should also copy
/// the shared libraries an ELF file needs.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct File {
    pub name: String,
    pub rename: String,
    pub autodep: bool,
}

pub(crate) fn render(input: &RenderInput) -> Result<String, RenderError> {
    if input.instance_name.is_empty()
        || !input
            .instance_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(
            "instance_name",
            format!(
                "{:?} is not letters, digits, '.', '_' and '-'",
                input.instance_name
            ),
        ));
    }
    let mut targets = vec![
        target(
            INIT_PATH,
            file("init_binary", &input.init_binary, INIT_PATH, true)?,
        ),
        // No autodep: encc-exec's interpreter is /.encc/lib/…, which exists only in the lower
        // layer; its libraries are init's (same toolchain), which init's autodep brings and
        // init copies there.
        target(
            EXEC_PATH,
            file("exec_binary", &input.exec_binary, EXEC_PATH, false)?,
        ),
        target(
            BOOT_CONFIG_PATH,
            file("boot_config", &input.boot_config, BOOT_CONFIG_PATH, false)?,
        ),
    ];
    if let Some(bundle) = &input.ca_bundle {
        targets.push(target(
            CA_BUNDLE_PATH,
            file("ca_bundle", bundle, CA_BUNDLE_PATH, false)?,
        ));
    }
    let yaml = serde_yaml_ng::to_string(&Bom { targets }).map_err(RenderError::Bom)?;
    Ok(format!(
        "# initfs of the encc boot instance {name}\n\
         # usage: copy_bom -f <this file> --root <instance>/initfs --include-dir /opt/occlum/etc/template\n\
         {yaml}",
        name = input.instance_name
    ))
}

fn target(enclave_path: &str, file: File) -> Target {
    let dir = Path::new(enclave_path)
        .parent()
        .and_then(Path::to_str)
        .unwrap_or("/")
        .to_string();
    Target {
        target: dir,
        copy: vec![Copy { files: vec![file] }],
    }
}

fn file(
    field: &'static str,
    host: &Path,
    enclave_path: &str,
    autodep: bool,
) -> Result<File, RenderError> {
    let name = host
        .to_str()
        .filter(|s| !s.is_empty() && !s.contains('\0'))
        .ok_or_else(|| invalid(field, format!("{host:?} is not a UTF-8 host path")))?;
    let rename = Path::new(enclave_path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    Ok(File {
        name: name.to_string(),
        rename,
        autodep,
    })
}
