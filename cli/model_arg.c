/* cli/model_arg.c: opening a model argument for the commands that run one
 * (generate, validate, logits): "MODEL", "MODEL+ADAPTER" or MODEL with
 * --adapter DIR; the adapter's warnings and a one-line summary go to stderr. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "formats/adapter.h"
#include "model/model.h"

/* Prints what the adapter is and the warnings it collected. */
static void print_adapter(const qt_adapter *ad, bool quiet)
{
    for (size_t i = 0; i < ad->n_warnings; i++)
        fprintf(stderr, "qtool: warning: adapter '%s': %s\n", ad->dir, ad->warnings[i]);
    if (quiet) return;
    fprintf(stderr, "qtool: adapter '%s': %zu LoRA modules, %zu replaced tensors, r %lld, "
                    "alpha %g%s%s%s\n",
            ad->dir, ad->n_mods, ad->n_repl, (long long)ad->cfg.r, ad->cfg.lora_alpha,
            ad->cfg.use_rslora ? ", rsLoRA" : "", ad->cfg.base_model[0] ? ", trained on " : "",
            ad->cfg.base_model);
}

int qt_cli_open_model(const char *arg, const char *adapter_opt, const qt_model_opts *opts,
                      bool quiet, char *model_path, size_t n, qt_model **out)
{
    char errmsg[QT_ERRMSG_SIZE] = "";
    const char *adapter = NULL;
    *out = NULL;
    if (!qt_model_arg_split(arg, model_path, n, &adapter)) {
        qt_cli_error("'%s': path too long", arg);
        return QT_EXIT_USAGE;
    }
    if (adapter && adapter_opt) {
        qt_cli_error("'%s' carries its own adapter and --adapter gives another", arg);
        return QT_EXIT_USAGE;
    }
    if (!adapter) adapter = adapter_opt;
    qt_status st = qt_model_open_adapter(model_path, adapter, opts, out, errmsg);
    if (st != QT_OK) {
        qt_cli_error("'%s': %s", arg, errmsg);
        return qt_cli_exit_for(st);
    }
    if (adapter) print_adapter(qt_model_adapter(*out), quiet);
    return QT_EXIT_OK;
}
