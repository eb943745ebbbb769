//! Fuzzes the native 128-bit Baillie-PSW (src/prime/wide.rs) and the
//! multi-limb one (src/prime/bpsw.rs) against GMP's `mpz_probab_prime_p`:
//! the answers must be the same for every input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prime_server::prime::is_prime_integer;
use prime_server::prime::is_prime_big;
use prime_server::prime::is_prime_u128;
use rug::integer::Order;
use rug::Integer;

fuzz_target!(|data: &[u8]| {
    // The first 16 bytes are a u128; forcing the top of the range and the
    // low bit keeps most inputs on the strong tests, not trial division.
    let mut bytes = [0u8; 16];
    let head = data.len().min(16);
    bytes[..head].copy_from_slice(&data[..head]);
    let n = u128::from_le_bytes(bytes);
    for candidate in [n, n | 1, n | 1 << 64 | 1, n | 1 << 127 | 1] {
        let want = is_prime_big(&Integer::from(candidate));
        assert_eq!(is_prime_u128(candidate), want, "n = {candidate}");
    }
    // All of the input, as a little-endian number of any size: the
    // multi-limb path (up to 64 limbs it is ours, above GMP's).
    let big = Integer::from_digits(data, Order::Lsf) | 1u32;
    assert_eq!(is_prime_integer(&big), is_prime_big(&big), "n = {big}");
});
