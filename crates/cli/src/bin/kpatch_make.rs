fn main() {
    eprintln!("kpatch_make: not implemented yet");
    std::process::exit(1);
}
