/* noentry -- a shared object in the plugins folder that is no plugin (no
 * crm_plugin_entry): refused, naming the file. */
int noentry_answer(void);
int noentry_answer(void)
{
    return 42;
}
