#ifndef GREET_H
#define GREET_H
void greet(const char *name);
int sum(int a, int b);
#endif
