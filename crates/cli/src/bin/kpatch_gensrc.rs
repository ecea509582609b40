fn main() {
    eprintln!("kpatch_gensrc: not implemented yet");
    std::process::exit(1);
}
