//! Occlum's SGX device ABI: `/dev/sgx` and its DCAP quote ioctls, as Occlum's LibOS
//! (`fs/dev_fs/dev_sgx`) and its `occlum_dcap` library define them:
//!
//! ```c
//! typedef struct {
//!     sgx_report_data_t *report_data;   // in: 64 bytes
//!     uint32_t          *quote_len;     // in: buffer size, out: quote size
//!     uint8_t           *quote_buf;     // out
//! } sgxioc_gen_dcap_quote_arg_t;
//! #define SGXIOC_GET_DCAP_QUOTE_SIZE _IOR('s', 7, uint32_t)
//! #define SGXIOC_GEN_DCAP_QUOTE      _IOWR('s', 8, sgxioc_gen_dcap_quote_arg_t)
//! ```
//!
//! All `unsafe` of the attesters is here. Compiled and layout-tested; never run on SGX
//! hardware here.

use std::fs::File;
use std::os::fd::AsRawFd;

use super::AttesterError;

/// Occlum's SGX device.
pub const SGX_DEVICE: &str = "/dev/sgx";

/// Size of SGX's REPORTDATA (`sgx_report_data_t`).
pub const REPORT_DATA_SIZE: usize = 64;

/// Largest quote accepted from the device.
const MAX_QUOTE_SIZE: u32 = 1 << 20;

/// Linux's `_IOC` encoding (asm-generic: x86_64).
const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// `_IOR('s', 7, uint32_t)`.
pub const SGXIOC_GET_DCAP_QUOTE_SIZE: u32 = ioc(IOC_READ, b's', 7, size_of::<u32>());
/// `_IOWR('s', 8, sgxioc_gen_dcap_quote_arg_t)`.
pub const SGXIOC_GEN_DCAP_QUOTE: u32 =
    ioc(IOC_READ | IOC_WRITE, b's', 8, size_of::<GenDcapQuoteArg>());

/// `sgx_report_data_t`.
#[repr(C)]
pub struct SgxReportData {
    /// The 64 bytes bound into the quote.
    pub d: [u8; REPORT_DATA_SIZE],
}

/// `sgxioc_gen_dcap_quote_arg_t`.
#[repr(C)]
pub struct GenDcapQuoteArg {
    /// In: the report data.
    pub report_data: *const SgxReportData,
    /// In: the buffer size; out: the quote size.
    pub quote_len: *mut u32,
    /// Out: the quote.
    pub quote_buf: *mut u8,
}

/// A DCAP quote over `report_data` from the SGX device at `path`.
pub fn dcap_quote(
    path: &str,
    report_data: &[u8; REPORT_DATA_SIZE],
) -> Result<Vec<u8>, AttesterError> {
    let device = File::open(path).map_err(|source| AttesterError::OpenDevice {
        path: path.to_owned(),
        source,
    })?;
    let fd = device.as_raw_fd();
    let ioctl_err = |what| AttesterError::Ioctl {
        what,
        path: path.to_owned(),
        source: std::io::Error::last_os_error(),
    };
    let mut size: u32 = 0;
    // SAFETY: `fd` is an open descriptor owned by `device` for the whole call; the request
    // writes one u32 through the pointer, which points to a live, writable u32.
    let rc = unsafe { libc::ioctl(fd, SGXIOC_GET_DCAP_QUOTE_SIZE as _, &mut size as *mut u32) };
    if rc < 0 {
        return Err(ioctl_err("SGXIOC_GET_DCAP_QUOTE_SIZE"));
    }
    if size == 0 || size > MAX_QUOTE_SIZE {
        return Err(AttesterError::QuoteSize(size));
    }
    let mut quote = vec![0u8; size as usize];
    let mut len = size;
    let data = SgxReportData { d: *report_data };
    let mut arg = GenDcapQuoteArg {
        report_data: &data,
        quote_len: &mut len,
        quote_buf: quote.as_mut_ptr(),
    };
    // SAFETY: `fd` is open (owned by `device`); `arg` points to a live struct whose three
    // pointers are valid for the call: 64 readable bytes of report data, a writable u32
    // holding the buffer size, and a writable buffer of exactly that many bytes. The
    // device writes at most `len` bytes into the buffer and the new size into `len`.
    let rc = unsafe {
        libc::ioctl(
            fd,
            SGXIOC_GEN_DCAP_QUOTE as _,
            &mut arg as *mut GenDcapQuoteArg,
        )
    };
    if rc < 0 {
        return Err(ioctl_err("SGXIOC_GEN_DCAP_QUOTE"));
    }
    quote.truncate(len.min(size) as usize);
    Ok(quote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn ioctl_numbers_match_occlum() {
        // The values Occlum's Rust clients hard-code.
        assert_eq!(SGXIOC_GET_DCAP_QUOTE_SIZE, 0x8004_7307);
        assert_eq!(SGXIOC_GEN_DCAP_QUOTE, 0xc018_7308);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn struct_layouts_match_the_c_abi() {
        assert_eq!(size_of::<SgxReportData>(), 64);
        assert_eq!(size_of::<GenDcapQuoteArg>(), 24);
        assert_eq!(offset_of!(GenDcapQuoteArg, report_data), 0);
        assert_eq!(offset_of!(GenDcapQuoteArg, quote_len), 8);
        assert_eq!(offset_of!(GenDcapQuoteArg, quote_buf), 16);
    }
}
