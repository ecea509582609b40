#include <iostream>
#include <memory>
#include <unistd.h>
#include "shapes.h"

int main()
{
	std::unique_ptr<Shape> s(new Rect(-3, 400));
	for (;;) {
		std::cout << describe(*s) << std::endl;
		usleep(1000000);
	}
}
