fn main() {
    eprintln!("kpatch_strip: not implemented yet");
    std::process::exit(1);
}
