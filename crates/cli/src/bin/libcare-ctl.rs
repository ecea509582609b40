fn main() {
    eprintln!("libcare-ctl: not implemented yet");
    std::process::exit(1);
}
