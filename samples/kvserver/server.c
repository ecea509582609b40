/* kvserver: a small in-memory key-value store on a loopback TCP port.
 *
 *   kvserver [PORT]     listen on 127.0.0.1:PORT (0 or none: a free port)
 *
 * It prints "listening on 127.0.0.1:PORT" and then serves any number of
 * clients from one process (poll), one request per line:
 *
 *   SET key value   ->  OK
 *   GET key         ->  VALUE value | NOT_FOUND
 *   STATS           ->  pid=PID clients=N requests=N
 *   anything else   ->  ERROR bad request
 *
 * The request parser lives in request.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "request.h"

#define MAX_CLIENTS 32
#define MAX_ENTRIES 256
#define LINE_MAX_LEN 512

struct entry {
	char key[KEY_MAX];
	char value[VALUE_MAX];
};

struct client {
	int fd;
	size_t used;
	char buf[LINE_MAX_LEN];
};

static struct entry store[MAX_ENTRIES];
static size_t entries;
static struct client clients[MAX_CLIENTS];
static size_t nclients;
static unsigned long requests;

static struct entry *lookup(const char *key)
{
	for (size_t i = 0; i < entries; i++)
		if (strcmp(store[i].key, key) == 0)
			return &store[i];
	return NULL;
}

/* Answers one request line (without its newline) into out. */
static void handle(const char *line, char *out, size_t cap)
{
	struct request r;
	struct entry *e;

	requests++;
	if (parse_request(line, &r) != 0) {
		snprintf(out, cap, "ERROR too long\n");
	} else if (strcmp(r.verb, "SET") == 0 && r.key[0]) {
		e = lookup(r.key);
		if (!e && entries < MAX_ENTRIES)
			e = &store[entries++];
		if (!e) {
			snprintf(out, cap, "ERROR store full\n");
			return;
		}
		memcpy(e->key, r.key, sizeof e->key);
		memcpy(e->value, r.value, sizeof e->value);
		snprintf(out, cap, "OK\n");
	} else if (strcmp(r.verb, "GET") == 0 && r.key[0]) {
		e = lookup(r.key);
		if (e)
			snprintf(out, cap, "VALUE %s\n", e->value);
		else
			snprintf(out, cap, "NOT_FOUND\n");
	} else if (strcmp(r.verb, "STATS") == 0) {
		snprintf(out, cap, "pid=%ld clients=%zu requests=%lu\n",
			 (long)getpid(), nclients, requests);
	} else {
		snprintf(out, cap, "ERROR bad request\n");
	}
}

static int send_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads what the client sent and answers every complete line.
 * Returns -1 when the connection is to be closed. */
static int serve(struct client *c)
{
	char reply[LINE_MAX_LEN + 32];
	ssize_t got = recv(c->fd, c->buf + c->used, sizeof c->buf - c->used, 0);

	if (got < 0 && errno == EINTR)
		return 0;
	if (got <= 0)
		return -1;
	c->used += (size_t)got;
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->used);
		if (!nl)
			break;
		*nl = '\0';
		if (nl > c->buf && nl[-1] == '\r')
			nl[-1] = '\0';
		handle(c->buf, reply, sizeof reply);
		if (send_all(c->fd, reply, strlen(reply)))
			return -1;
		c->used -= (size_t)(nl + 1 - c->buf);
		memmove(c->buf, nl + 1, c->used);
	}
	/* A full buffer without a newline: the line is too long. */
	return c->used == sizeof c->buf ? -1 : 0;
}

static int listen_on(unsigned short port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof sa;
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons(port);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 16) ||
	    getsockname(fd, (struct sockaddr *)&sa, &len)) {
		perror("kvserver: listen");
		exit(1);
	}
	printf("listening on 127.0.0.1:%u\n", ntohs(sa.sin_port));
	fflush(stdout);
	return fd;
}

int main(int argc, char **argv)
{
	struct pollfd pfd[MAX_CLIENTS + 1];
	int ls;

	if (argc > 2) {
		fprintf(stderr, "usage: kvserver [PORT]\n");
		return 2;
	}
	ls = listen_on(argc == 2 ? (unsigned short)atoi(argv[1]) : 0);
	for (;;) {
		pfd[0].fd = ls;
		pfd[0].events = POLLIN;
		for (size_t i = 0; i < nclients; i++) {
			pfd[i + 1].fd = clients[i].fd;
			pfd[i + 1].events = POLLIN;
		}
		if (poll(pfd, nclients + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("kvserver: poll");
			return 1;
		}
		/* Clients first, from the end, so that closing one (the last
		 * client moves into its slot) skips none. */
		for (size_t i = nclients; i-- > 0;) {
			if (!pfd[i + 1].revents)
				continue;
			if (serve(&clients[i]) == 0)
				continue;
			close(clients[i].fd);
			clients[i] = clients[--nclients];
		}
		if (pfd[0].revents & POLLIN) {
			int fd = accept(ls, NULL, NULL);
			if (fd < 0)
				continue;
			if (nclients == MAX_CLIENTS) {
				close(fd);
				continue;
			}
			clients[nclients].fd = fd;
			clients[nclients].used = 0;
			nclients++;
		}
	}
}
