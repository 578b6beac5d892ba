//! Rebuilds when a migration is added: `sqlx::migrate!` embeds the folder at compile
//! time but cannot tell Cargo to watch it for new files.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
