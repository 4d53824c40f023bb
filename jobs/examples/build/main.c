#include <stdio.h>
#include "greet.h"

int main(void) {
    greet("orchestrate");
    printf("2 + 3 = %d\n", sum(2, 3));
    return 0;
}
