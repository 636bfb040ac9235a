//! Kernel structure offsets from the running kernel's BTF.
//!
//! The kernel programs walk `task_struct`, `files_struct`, `dentry`, `mount`, ... whose
//! layouts differ between kernels and configurations. Rust eBPF has no CO-RE relocations,
//! so at start-up the agent parses `/sys/kernel/btf/vmlinux` (a small, stable format:
//! header, type records, string table) and resolves each field it needs, descending into
//! anonymous structs and unions. A missing field is an error that names it.

use agent_common::{KernelOffsets, OFFSETS_MAGIC};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The BTF blob is not what the format says it should be.
    #[error("malformed BTF: {0}")]
    Malformed(String),
    /// A struct the programs need is absent from this kernel's BTF.
    #[error("kernel BTF has no struct `{0}` (needed by groundtruth's kernel programs)")]
    MissingStruct(String),
    /// A field the programs need is absent from this kernel's BTF.
    #[error("kernel BTF has no field `{strukt}.{field}` (needed by groundtruth's kernel programs); this kernel is not supported")]
    MissingField { strukt: String, field: String },
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name: u32,
    kind: u32,
    /// Referenced type for typedef/const/volatile/ptr.
    size_or_type: u32,
    members: Vec<Member>,
}

/// Parsed BTF: types by id (id 0 is void) and the string table.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs_by_name: HashMap<String, u32>,
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| BtfError::Malformed(format!("truncated at byte {off}")))
}

impl Btf {
    pub fn from_sys_fs() -> anyhow::Result<Self> {
        let path = "/sys/kernel/btf/vmlinux";
        let bytes = std::fs::read(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read {path}: {e}. groundtruth needs a kernel built with \
                 CONFIG_DEBUG_INFO_BTF=y (kernel 5.15 or later with BTF)"
            )
        })?;
        Ok(Self::parse(&bytes)?)
    }

    pub fn parse(b: &[u8]) -> Result<Self, BtfError> {
        let magic = b
            .get(0..2)
            .ok_or_else(|| BtfError::Malformed("empty".into()))?;
        if magic != [0x9f, 0xeb] {
            return Err(BtfError::Malformed(
                "bad magic (not little-endian BTF)".into(),
            ));
        }
        let hdr_len = u32_at(b, 4)? as usize;
        let type_off = u32_at(b, 8)? as usize;
        let type_len = u32_at(b, 12)? as usize;
        let str_off = u32_at(b, 16)? as usize;
        let str_len = u32_at(b, 20)? as usize;
        let types_start = hdr_len + type_off;
        let types_end = types_start + type_len;
        let str_start = hdr_len + str_off;
        let strings = b
            .get(str_start..str_start + str_len)
            .ok_or_else(|| BtfError::Malformed("string section out of bounds".into()))?
            .to_vec();
        if types_end > b.len() {
            return Err(BtfError::Malformed("type section out of bounds".into()));
        }
        let mut types = vec![Type {
            name: 0,
            kind: 0,
            size_or_type: 0,
            members: vec![],
        }];
        let mut p = types_start;
        while p < types_end {
            let name = u32_at(b, p)?;
            let info = u32_at(b, p + 4)?;
            let size_or_type = u32_at(b, p + 8)?;
            p += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = vec![];
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => p += 4,
                KIND_ARRAY => p += 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = p + 12 * i;
                        let off = u32_at(b, m + 8)?;
                        members.push(Member {
                            name: u32_at(b, m)?,
                            type_id: u32_at(b, m + 4)?,
                            bit_offset: if kind_flag { off & 0x00ff_ffff } else { off },
                        });
                    }
                    p += 12 * vlen;
                }
                KIND_ENUM | KIND_FUNC_PROTO => p += 8 * vlen,
                KIND_DATASEC | KIND_ENUM64 => p += 12 * vlen,
                0 | KIND_PTR | 7 | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | 12 | 16 | KIND_TYPE_TAG => {}
                k => return Err(BtfError::Malformed(format!("unknown type kind {k}"))),
            }
            types.push(Type {
                name,
                kind,
                size_or_type,
                members,
            });
        }
        let mut btf = Btf {
            types,
            strings,
            structs_by_name: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            // Keep the first complete definition of each struct name.
            if t.kind == KIND_STRUCT && !t.members.is_empty() {
                let name = btf.str_at(t.name).to_string();
                btf.structs_by_name.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn str_at(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    /// Follow typedef/const/volatile/restrict/type_tag to the underlying type.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.size_or_type
                }
                _ => break,
            }
        }
        id
    }

    /// Byte offset and type of `field` in the struct/union `id`, looking through
    /// anonymous members.
    fn member(&self, id: u32, field: &str, depth: u32) -> Option<(u32, u32)> {
        let t = self.types.get(self.resolve(id) as usize)?;
        if depth > 8 || !matches!(t.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for m in &t.members {
            if m.name == 0 {
                if let Some((off, ty)) = self.member(m.type_id, field, depth + 1) {
                    return Some((m.bit_offset / 8 + off, ty));
                }
            } else if self.str_at(m.name) == field {
                return Some((m.bit_offset / 8, m.type_id));
            }
        }
        None
    }

    /// Offset of a dotted field path (`"d_name.name"`) inside `struct strukt`.
    pub fn offset(&self, strukt: &str, path: &str) -> Result<u32, BtfError> {
        let mut id = *self
            .structs_by_name
            .get(strukt)
            .ok_or_else(|| BtfError::MissingStruct(strukt.to_string()))?;
        let mut total = 0;
        for part in path.split('.') {
            let (off, ty) = self
                .member(id, part, 0)
                .ok_or_else(|| BtfError::MissingField {
                    strukt: strukt.to_string(),
                    field: path.to_string(),
                })?;
            total += off;
            id = ty;
        }
        Ok(total)
    }
}

/// Every offset the kernel programs use, resolved for this kernel.
pub fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    // The reference count of struct file changed type in 6.13.
    let (file_refcnt, file_refcnt_bias) = match btf.offset("file", "f_ref") {
        Ok(o) => (o, 1),
        Err(_) => (
            btf.offset("file", "f_count")
                .map_err(|_| BtfError::MissingField {
                    strukt: "file".into(),
                    field: "f_ref (6.13+) or f_count".into(),
                })?,
            0,
        ),
    };
    let sk = |f: &str| btf.offset("sock", &format!("__sk_common.{f}"));
    Ok(KernelOffsets {
        file_refcnt,
        file_refcnt_bias,
        file_private_data: btf.offset("file", "private_data")?,
        inode_i_mode: btf.offset("inode", "i_mode")?,
        socket_sk: btf.offset("socket", "sk")?,
        sk_family: sk("skc_family")?,
        sk_state: sk("skc_state")?,
        sk_num: sk("skc_num")?,
        sk_dport: sk("skc_dport")?,
        sk_daddr: sk("skc_daddr")?,
        sk_rcv_saddr: sk("skc_rcv_saddr")?,
        sk_v6_daddr: sk("skc_v6_daddr")?,
        sk_v6_rcv_saddr: sk("skc_v6_rcv_saddr")?,
        sk_protocol: btf.offset("sock", "sk_protocol")?,
        sk_type: btf.offset("sock", "sk_type")?,
        sk_err: btf.offset("sock", "sk_err")?,
        tcp_bytes_received: btf.offset("tcp_sock", "bytes_received")?,
        tcp_bytes_sent: btf.offset("tcp_sock", "bytes_sent")?,
        tcp_bytes_retrans: btf.offset("tcp_sock", "bytes_retrans")?,
        // Moved into sock_common (skc_flags) in 6.x; `sock.sk_flags` before.
        sk_flags: sk("skc_flags").or_else(|_| btf.offset("sock", "sk_flags"))?,
        cgroup_kn: btf.offset("cgroup", "kn")?,
        kernfs_node_id: btf.offset("kernfs_node", "id")?,
        cgroup_parent_css: btf.offset("cgroup", "self.parent")?,
        css_cgroup: btf.offset("cgroup_subsys_state", "cgroup")?,
        cgroup_root: btf.offset("cgroup", "root")?,
        cgroup_root_hierarchy_id: btf.offset("cgroup_root", "hierarchy_id")?,
        sk_peer_pid: btf.offset("sock", "sk_peer_pid")?,
        pid_numbers_nr: btf.offset("pid", "numbers")? + btf.offset("upid", "nr")?,
        unix_sock_addr: btf.offset("unix_sock", "addr")?,
        unix_address_len: btf.offset("unix_address", "len")?,
        unix_address_name: btf.offset("unix_address", "name")?,
        unix_sock_peer: btf.offset("unix_sock", "peer")?,
        magic: OFFSETS_MAGIC,
        task_real_parent: btf.offset("task_struct", "real_parent")?,
        task_tgid: btf.offset("task_struct", "tgid")?,
        task_pid: btf.offset("task_struct", "pid")?,
        task_files: btf.offset("task_struct", "files")?,
        task_fs: btf.offset("task_struct", "fs")?,
        task_mm: btf.offset("task_struct", "mm")?,
        task_signal: btf.offset("task_struct", "signal")?,
        task_exit_code: btf.offset("task_struct", "exit_code")?,
        signal_live: btf.offset("signal_struct", "live")?,
        files_fdt: btf.offset("files_struct", "fdt")?,
        fdt_fd: btf.offset("fdtable", "fd")?,
        fdt_max_fds: btf.offset("fdtable", "max_fds")?,
        file_f_path: btf.offset("file", "f_path")?,
        file_f_inode: btf.offset("file", "f_inode")?,
        file_f_mode: btf.offset("file", "f_mode")?,
        path_mnt: btf.offset("path", "mnt")?,
        path_dentry: btf.offset("path", "dentry")?,
        dentry_d_parent: btf.offset("dentry", "d_parent")?,
        dentry_d_name_name: btf.offset("dentry", "d_name.name")?,
        dentry_d_inode: btf.offset("dentry", "d_inode")?,
        inode_i_ino: btf.offset("inode", "i_ino")?,
        inode_i_sb: btf.offset("inode", "i_sb")?,
        sb_s_dev: btf.offset("super_block", "s_dev")?,
        mount_mnt: btf.offset("mount", "mnt")?,
        mount_mnt_parent: btf.offset("mount", "mnt_parent")?,
        mount_mnt_mountpoint: btf.offset("mount", "mnt_mountpoint")?,
        vfsmount_mnt_root: btf.offset("vfsmount", "mnt_root")?,
        fs_pwd: btf.offset("fs_struct", "pwd")?,
        mm_arg_start: btf.offset("mm_struct", "arg_start")?,
        mm_arg_end: btf.offset("mm_struct", "arg_end")?,
        bprm_file: btf.offset("linux_binprm", "file")?,
        task_ti_status: btf.offset("task_struct", "thread_info.status")?,
        regs_nr: btf.offset("pt_regs", "orig_ax")?,
        regs_args: [
            btf.offset("pt_regs", "di")?,
            btf.offset("pt_regs", "si")?,
            btf.offset("pt_regs", "dx")?,
            btf.offset("pt_regs", "r10")?,
            btf.offset("pt_regs", "r8")?,
            btf.offset("pt_regs", "r9")?,
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built BTF blob: struct outer { int a; union { int b; struct inner c; }; }
    /// and struct inner { long x; long y; }.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0outer\0a\0b\0c\0inner\0x\0y\0long\0".to_vec();
        let s = |name: &str| -> u32 {
            let pos = strings
                .windows(name.len() + 2)
                .position(|w| {
                    w[0] == 0 && &w[1..=name.len()] == name.as_bytes() && w[name.len() + 1] == 0
                })
                .unwrap();
            pos as u32 + 1
        };
        let mut t = vec![];
        let mut push = |words: &[u32]| {
            for w in words {
                t.extend_from_slice(&w.to_le_bytes());
            }
        };
        // 1: int
        push(&[s("int"), KIND_INT << 24, 4, 32]);
        // 2: long
        push(&[s("long"), KIND_INT << 24, 8, 64]);
        // 3: struct inner { long x @0; long y @64 }
        push(&[
            s("inner"),
            (KIND_STRUCT << 24) | 2,
            16,
            s("x"),
            2,
            0,
            s("y"),
            2,
            64,
        ]);
        // 4: anonymous union { int b @0; struct inner c @0 }
        push(&[0, (KIND_UNION << 24) | 2, 16, s("b"), 1, 0, s("c"), 3, 0]);
        // 5: struct outer { int a @0; union @64 }
        push(&[
            s("outer"),
            (KIND_STRUCT << 24) | 2,
            24,
            s("a"),
            1,
            0,
            0,
            4,
            64,
        ]);
        let mut b = vec![];
        b.extend_from_slice(&[0x9f, 0xeb, 1, 0]);
        b.extend_from_slice(&24u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(t.len() as u32).to_le_bytes());
        b.extend_from_slice(&(t.len() as u32).to_le_bytes());
        b.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        b.extend_from_slice(&t);
        b.extend_from_slice(&strings);
        b
    }

    #[test]
    fn resolves_fields_through_anonymous_members() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.offset("outer", "a").unwrap(), 0);
        assert_eq!(btf.offset("outer", "b").unwrap(), 8);
        assert_eq!(btf.offset("outer", "c.y").unwrap(), 16);
        assert_eq!(btf.offset("inner", "y").unwrap(), 8);
    }

    #[test]
    fn missing_field_names_it() {
        let btf = Btf::parse(&blob()).unwrap();
        let e = btf.offset("outer", "nope").unwrap_err().to_string();
        assert!(e.contains("`outer.nope`"), "{e}");
        let e = btf.offset("nostruct", "a").unwrap_err().to_string();
        assert!(e.contains("`nostruct`"), "{e}");
    }

    #[test]
    fn truncated_blob_is_an_error_not_a_panic() {
        let b = blob();
        for n in 0..b.len() {
            let _ = Btf::parse(&b[..n]);
        }
    }

    #[test]
    fn running_kernel_has_every_field() {
        // Runs wherever /sys/kernel/btf/vmlinux is readable (not only as root).
        let Ok(btf) = Btf::from_sys_fs() else {
            if std::env::var_os("CI").is_some() {
                panic!("CI machines have kernel BTF");
            }
            eprintln!("skipped: no kernel BTF here");
            return;
        };
        let o = kernel_offsets(&btf).unwrap();
        assert_eq!(o.magic, OFFSETS_MAGIC);
        assert_ne!(o.task_tgid, o.task_pid);
    }
}
