//! Prints berth's default seccomp profile (Docker's, what `berth run` applies)
//! as the JSON of a spec's `linux.seccomp`, for `cargo xtask profile-start`.

fn main() {
    match serde_json::to_string_pretty(&berth::oci::default_profile::profile()) {
        Ok(s) => println!("{s}"),
        Err(e) => {
            eprintln!("seccomp-profile: {e}");
            std::process::exit(1);
        }
    }
}
