#include <string.h>
#include "parse.h"

/* Copies the word after "GET " into out; the bug: no bound on outlen. */
static inline int copy_word(const char *p, int len, char *out, int outlen)
{
	int n = 0;
	while (n < len && p[n] != ' ' && p[n] != '\0') {
		out[n] = p[n];
		n++;
	}
	out[n] = '\0';
	return n;
}

int parse_request(const char *buf, int len, char *out, int outlen)
{
	if (len < 4 || memcmp(buf, "GET ", 4) != 0)
		return -1;
	return copy_word(buf + 4, len - 4, out, outlen);
}
