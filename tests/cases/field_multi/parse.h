int parse_request(const char *buf, int len, char *out, int outlen);
int lookup_code(int c);
