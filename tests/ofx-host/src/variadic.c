/* The variadic functions of the OpenFX parameter and message suites, for the test host. They
 * unpack their arguments and call back into Rust through the table Rust installs first. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef int OfxStatus;

struct ofx_host_callbacks {
    /* Number of values and their kind ('i' int/bool/choice, 'd' double, 's' string). */
    int (*param_shape)(void *param, char *kind);
    /* time is NAN for "the current time". outs: one pointer per value. */
    OfxStatus (*param_get)(void *param, double time, void **outs, int count);
    OfxStatus (*param_set)(void *param, const int *ints, const double *doubles, const char *const *strings, int count);
    OfxStatus (*message)(void *handle, const char *type, const char *id, const char *text, int persistent);
};

static struct ofx_host_callbacks callbacks;

void ofx_host_install_callbacks(const struct ofx_host_callbacks *table) { callbacks = *table; }

enum { MAX_VALUES = 4, BAD_HANDLE = 9 };

static OfxStatus get(void *param, double time, va_list ap) {
    char kind;
    int count = callbacks.param_shape(param, &kind);
    if (count <= 0 || count > MAX_VALUES) return BAD_HANDLE;
    void *outs[MAX_VALUES];
    for (int i = 0; i < count; ++i) outs[i] = va_arg(ap, void *);
    return callbacks.param_get(param, time, outs, count);
}

static OfxStatus set(void *param, va_list ap) {
    char kind;
    int count = callbacks.param_shape(param, &kind);
    if (count <= 0 || count > MAX_VALUES) return BAD_HANDLE;
    int ints[MAX_VALUES] = {0};
    double doubles[MAX_VALUES] = {0};
    const char *strings[MAX_VALUES] = {0};
    for (int i = 0; i < count; ++i) {
        if (kind == 'd') doubles[i] = va_arg(ap, double);
        else if (kind == 's') strings[i] = va_arg(ap, const char *);
        else ints[i] = va_arg(ap, int);
    }
    return callbacks.param_set(param, ints, doubles, strings, count);
}

OfxStatus ofx_host_param_get_value(void *param, ...) {
    va_list ap;
    va_start(ap, param);
    OfxStatus status = get(param, __builtin_nan(""), ap);
    va_end(ap);
    return status;
}

OfxStatus ofx_host_param_get_value_at_time(void *param, double time, ...) {
    va_list ap;
    va_start(ap, time);
    OfxStatus status = get(param, time, ap);
    va_end(ap);
    return status;
}

OfxStatus ofx_host_param_set_value(void *param, ...) {
    va_list ap;
    va_start(ap, param);
    OfxStatus status = set(param, ap);
    va_end(ap);
    return status;
}

OfxStatus ofx_host_param_set_value_at_time(void *param, double time, ...) {
    (void)time; /* no animation in this host */
    va_list ap;
    va_start(ap, time);
    OfxStatus status = set(param, ap);
    va_end(ap);
    return status;
}

static OfxStatus post(void *handle, const char *type, const char *id, const char *format, va_list ap, int persistent) {
    va_list copy;
    va_copy(copy, ap);
    int length = vsnprintf(NULL, 0, format, copy);
    va_end(copy);
    if (length < 0) return 1;
    char *text = malloc((size_t)length + 1);
    if (!text) return 8;
    vsnprintf(text, (size_t)length + 1, format, ap);
    OfxStatus status = callbacks.message(handle, type, id, text, persistent);
    free(text);
    return status;
}

OfxStatus ofx_host_message(void *handle, const char *type, const char *id, const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    OfxStatus status = post(handle, type, id, format, ap, 0);
    va_end(ap);
    return status;
}

OfxStatus ofx_host_set_persistent_message(void *handle, const char *type, const char *id, const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    OfxStatus status = post(handle, type, id, format, ap, 1);
    va_end(ap);
    return status;
}
