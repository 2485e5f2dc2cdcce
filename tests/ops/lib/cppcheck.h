/* cppcheck.h: what cppcheck is told of the libraries' macros (ops.cppcheck --include's it).
 * cppcheck reads our sources without the system headers (reading them would be slow and
 * report on code that is not ours), so it cannot expand jansson's iteration macros; these
 * forms have the same shape: a loop that assigns the named variables. */
#define json_array_foreach(array, index, value)                                                    \
    for (index = 0; index < json_array_size(array) && (value = json_array_get(array, index));      \
         index++)
#define json_object_foreach(object, key, value)                                                    \
    for (key = json_object_iter_key(json_object_iter(object));                                     \
         key && (value = json_object_iter_value(json_object_key_to_iter(key)));                    \
         key = json_object_iter_key(json_object_iter_next(object, json_object_key_to_iter(key))))
