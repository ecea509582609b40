#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "parse.h"

int fmt_reply(char *dst, int dstlen, const char *word, int n, int code);

int main(void)
{
	const char *req = "GET abcdefghijkl HTTP/1.0";
	char word[64];
	char line[128];
	for (;;) {
		int n = parse_request(req, strlen(req), word, 8);
		fmt_reply(line, sizeof line, word, n, lookup_code(3));
		puts(line);
		fflush(stdout);
		usleep(1000000);
	}
}
