#include <iostream>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include "account.h"

int main()
{
	Ledger l("alice");
	for (int i = 0; i < 3; i++)
		l.post(-250);
	for (;;) {
		std::string note;
		try {
			l.post(-250);
		} catch (const std::exception &e) {
			note = std::string(" rejected: ") + e.what();
		}
		std::cout << l.summary() << note << std::endl;
		usleep(1000000);
	}
}
