"""The Train tab: preset, model, reward, method, the window (x0 strip and locality profile), the settings,
Start / Duel / Stop. Its form is generated from the settings table and passed to its handlers as a dict."""

from __future__ import annotations

from typing import Any

import gradio as gr

from explorer import UI_DIR, presenter
from explorer.notices import safe, shown
from explorer.views import common, live, train
from hrf_core import methods, settings
from hrf_core.presets import PRESETS

#: The window widget (a gr.HTML template: two handles over the DDIM steps, the x0 strip, the locality profile's
#: bars and line), kept in ui/ beside the live panel's files.
WINDOW_TEMPLATE = (UI_DIR / "window.html").read_text()
WINDOW_CSS = (UI_DIR / "window.css").read_text()
WINDOW_JS = (UI_DIR / "window.js").read_text()
#: Notes under the choice settings the form shows as radios.
RADIO_INFO = {
    "method": "which denoising steps are trained",
    "start_mode": "uniform: the paper's HRF; fixed: the reviewers' re-noised-start ablation",
    "adv_scope": "per re-noised image is what the paper's code does (batch = siblings = 5); see Results for what "
                 "it changes",
    "outside_window": "window-only keeps every step the run never trained the base model's, in training, "
                      "evaluation and sampling alike",
}


def gpu_here() -> bool:
    """Whether this machine has a CUDA GPU (the GPU-only settings say they change nothing without one)."""
    import torch

    return torch.cuda.is_available()


class TrainTab:
    """The Train tab of a :class:`~explorer.page.Lab`: layout, events, handlers (callable directly in tests)."""

    def __init__(self, lab):
        self.lab = lab
        self.manager = lab.manager
        self.store = lab.store
        self.c = None

    # -- the form ----------------------------------------------------------------------------------
    def _launch(self, token, go):
        try:
            presenter.check(token)
            run_ids = go()
        except Exception as error:  # noqa: BLE001 - refusals and failures alike leave the page up
            return shown(error, "Not started: "), gr.Tabs()
        note = self.manager.start_note  # a proxy stands in for weights this machine cannot have: one line
        note = f" {note[:1].upper()}{note[1:]}." if note else ""
        return common.notice_html(f"Started {' and '.join(run_ids)}.{note}", "warning" if note else "ok"), \
            gr.Tabs(selected="live")

    def config(self, preset: str | None, values: dict[str, Any]):
        """The config the form describes (``values`` by setting name); ValueError naming the field."""
        return train.config_from_form(values, preset, self.lab.defaults)

    def start(self, token: str, preset: str | None, values: dict[str, Any]):
        """Validate the form and start a run; on a problem: a warning, the reason in the notice."""
        return self._launch(token, lambda: [self.manager.start(self.config(preset, values))])

    def duel(self, token: str, preset: str | None, values: dict[str, Any]):
        """Train the form's configuration against its method's Duel partner, side by side."""
        def go():
            config = self.config(preset, values)
            return list(self.manager.start_duel(config, train.duel_partner(config)))

        return self._launch(token, go)

    def stop(self, token):
        try:
            presenter.check(token)
        except PermissionError as error:
            return shown(error)
        if self.manager.stop():
            return common.notice_html("Stopping after the current denoising step…", "warning")
        gr.Info("Nothing is running.")
        return common.notice_html("Nothing is running.", "info")

    def fill_preset(self, preset) -> dict[str, Any] | None:
        """The form's values of a preset by setting name, with the window ``note``; None for no preset."""
        if preset not in PRESETS:
            return None
        values = train.form_from_config(PRESETS[preset])
        values["note"] = train.window_note(values["method"], values["window"], values["num_steps"],
                                           values["epochs"], values["start_mode"])
        return values

    def preset_follows(self, token, preset: str | None, values: dict[str, Any]):
        """The preset, or "custom" once the form no longer describes it."""
        if preset == train.NO_PRESET or train.preset_matches(preset, values):
            return gr.skip()
        return train.NO_PRESET

    def memory(self, preset: str | None, values: dict[str, Any]) -> str:
        """The memory the form's run needs (an estimate), under the form."""
        return train.memory_line(values, preset, self.lab.defaults)

    def note(self, method, window, num_steps, epochs, start_mode="uniform"):
        return train.window_note(method, window, num_steps, epochs, start_mode)

    def reward_info(self, reward, model, prompts):
        """The reward's line, flagged when the base model already scores near its maximum (a measured base)."""
        return train.reward_info(reward, model, prompts, self.store)

    def method_help(self, method):
        return methods.METHODS[method].help if method in methods.METHODS else ""

    def steps_changed(self, num_steps, window):
        """K changed: rescale the window widget to 0..K, keeping the window inside it."""
        try:
            k = int(train.parse_number("num_steps", num_steps))
        except ValueError:
            return gr.skip()
        start, end = settings.fit_window(window, k)
        return gr.HTML(value=f"{start}:{end}", steps=k, strip=[], hint="computing x0 previews…")

    def strip(self, model, num_steps):
        """The base model's x0-prediction strip under the window (computed once per model and K)."""
        try:
            k = int(train.parse_number("num_steps", num_steps))
        except ValueError:
            return gr.skip()
        try:
            uris = train.x0_strip(model, k)
        except Exception as error:  # noqa: BLE001 - a missing model must not break the page
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            return gr.HTML(strip=[], hint=f"no x0 previews: {reason}")
        return gr.HTML(strip=uris, hint="")

    @safe(4)
    def choices(self, model, reward):
        """Model and reward dropdowns with availability (loaded after the page is up: imports torch)."""
        models = train.model_choices(extra=[model] if model else [])
        rewards = train.reward_choices()
        return (gr.Dropdown(choices=models, value=model), train.model_info(model),
                gr.Dropdown(choices=rewards, value=reward), self.reward_info(reward, model, None))

    # -- locality profile --------------------------------------------------------------------------
    def _profile(self, model, reward, num_steps):
        """(the cached or shipped base-model profile of (model, reward, K) or None, K); ValueError for a bad K."""
        k = int(train.parse_number("num_steps", num_steps))
        return train.stored_profile(self.store, str(model), str(reward), k), k

    def profile_view(self, model, reward, num_steps):
        """The profile bars under the window strip, and the line per window start."""
        try:
            profile, k = self._profile(model, reward, num_steps)
        except ValueError:
            return gr.skip()
        return gr.HTML(**train.profile_props(profile, k))

    def suggest(self, model, reward, num_steps):
        """Set the window from the reward's profile (the rule: hrf_core.study.locality.suggest_window)."""
        try:
            profile, k = self._profile(model, reward, num_steps)
            value, reason = train.suggested_window(profile, k)
        except ValueError as error:
            return gr.skip(), shown(error)
        return gr.HTML(value=value), common.notice_html(reason, "ok")

    def compute_profile(self, token, model, reward, num_steps):
        """Start computing the profile in the job slot (presenter-guarded); the timer then shows its progress."""
        try:
            presenter.check(token)
            k = int(train.parse_number("num_steps", num_steps))
            common.require_runnable(str(model))
            ok, reason = train.reward_status(str(reward))
            if not ok:
                raise ValueError(reason)
            train.start_profile(self.manager, str(model), str(reward), k)
        except (ValueError, PermissionError) as error:
            return shown(error, "Not started: "), gr.Timer(active=False)
        return common.notice_html(f"Computing the locality profile of {reward} on {model}…", "info"), \
            gr.Timer(active=True)

    def profile_tick(self, model, reward, num_steps):
        """While a profile computes: its progress; when it ends: the bars, and the timer stops."""
        task = self.manager.task()
        if task is None:
            return gr.skip(), gr.skip(), gr.Timer(active=False)
        if task.state == "running":
            detail = f" ({task.message})" if task.message else ""
            return common.notice_html(f"Computing {task.label}: {task.fraction:.0%}{detail}", "info"), gr.skip(), \
                gr.skip()
        if task.state == "done":
            notice = common.notice_html(f"Computed {task.label} in {task.result.get('seconds', 0):.0f} s.", "ok")
        elif task.state == "stopped":
            notice = common.notice_html(f"Stopped {task.label}.", "warning")
        else:
            notice = common.notice_html(f"{task.label} failed: {task.error}", "error")
        return notice, self.profile_view(model, reward, num_steps), gr.Timer(active=False)

    # -- layout ------------------------------------------------------------------------------------
    def layout(self, c) -> None:
        """Preset, the form's settings (from the settings table), the window widget, the buttons."""
        self.c = c
        d = c.d
        c.form = {}
        radios = {s.name: s for s in settings.on("form") if s.kind == "choice"}

        def radio(name: str, **kwargs):
            setting = radios[name]
            c.form[name] = gr.Radio([(label, value) for value, label in setting.choice_labels().items()],
                                    value=getattr(d, name), label=setting.label, info=RADIO_INFO.get(name),
                                    elem_id=name.replace("_", "-"), **kwargs)

        with gr.Tab("Train", id="train", elem_id="tab-train"):
            with gr.Row(equal_height=False):
                with gr.Column(min_width=200):
                    c.preset = gr.Dropdown([train.NO_PRESET, *PRESETS], value=self.lab.preset, label="Preset",
                                           info="fills every field", elem_id="preset")
                with gr.Column(min_width=260):
                    c.form["model"] = gr.Dropdown([(d.model, d.model)], value=d.model, label="Base model",
                                                  allow_custom_value=True, elem_id="model",
                                                  info="or type a local diffusers folder")
                    c.model_info = gr.Markdown("", elem_classes="hrf-info", elem_id="model-info")
                with gr.Column(min_width=220):
                    c.form["reward"] = gr.Dropdown([(d.reward, d.reward)], value=d.reward, label="Reward",
                                                   info="what fine-tuning maximises", elem_id="reward")
                    c.reward_info = gr.Markdown("", elem_classes="hrf-info", elem_id="reward-info")
                with gr.Column(scale=2, min_width=380):
                    radio("method")
                    c.method_help = gr.Markdown(self.method_help(d.method), elem_classes="hrf-info")
            c.form["window"] = gr.HTML(c.values["window"], html_template=WINDOW_TEMPLATE, css_template=WINDOW_CSS,
                                       js_on_load=WINDOW_JS, steps=c.k, strip=[], hint="computing x0 previews…",
                                       profile=[], lines=[], plabel="", elem_id="window", apply_default_css=False,
                                       container=True, padding=True)
            with gr.Row(equal_height=False):
                c.suggest = gr.Button("✦ Suggest window", size="sm", elem_id="suggest-btn", scale=0, min_width=170)
                c.compute = gr.Button("Compute profile", size="sm", elem_id="profile-btn", scale=0, min_width=150)
                c.profile_note = gr.HTML("", elem_id="profile-note")
                c.profile_timer = gr.Timer(1.0, active=False)
            groups = train.form_groups()
            with gr.Row(equal_height=False):
                c.form["prompts"] = gr.Textbox(c.values["prompts"], label="Prompts", elem_id="prompts", lines=1,
                                               scale=3,
                                               info="a prompted model's prompt set: each sample draws one "
                                                    "(digits16-cond: digits, e.g. 3,7,8 or 3 7 8; one prompt per line "
                                                    "for text); empty for an unconditional model")
                for name in groups["prompt"]:
                    self._number(c, name, scale=1)
            with gr.Row(equal_height=False):
                for name in groups["main"]:
                    self._number(c, name)
            with gr.Row(equal_height=False):
                c.note = gr.Markdown(self.note(d.method, c.values["window"], c.k, d.epochs, d.start_mode),
                                     elem_id="window-note", elem_classes="hrf-note")
                radio("start_mode")
            with gr.Accordion("Advanced settings", open=False, elem_id="advanced"):
                self._fields(c, groups["advanced"], radio)
            gpu = "" if gpu_here() else ": no GPU here, they change nothing on this CPU"
            with gr.Accordion(f"GPU settings (precision, memory, LoRA){gpu}", open=False, elem_id="gpu-settings"):
                self._fields(c, groups["gpu"], radio)
            with gr.Row():
                c.start = gr.Button("▶ Start", variant="primary", elem_id="start-btn", scale=3)
                c.duel = gr.Button("⚔ Duel: this vs DDPO", variant="secondary", elem_id="duel-btn", scale=2)
                c.stop = gr.Button("■ Stop", variant="stop", elem_id="stop-btn", scale=1)
            c.memory = gr.Markdown("", elem_id="memory-estimate", elem_classes="hrf-info")
            snap = self.manager.snapshot()  # an example run reads "Example" from the start, as the live feed says
            c.train_status = gr.HTML(live.status_html(snap, live.is_example(self.store, snap.run_id)),
                                     elem_id="train-status")
            c.notice = gr.HTML("", elem_id="notice")
        c.form = {s.name: c.form[s.name] for s in settings.on("form")}  # the table's order

    def _number(self, c, name: str, **kwargs) -> None:
        setting = settings.TABLE[name]
        c.form[name] = gr.Number(c.values[name], label=setting.label, precision=0 if setting.kind == "int" else None,
                                 elem_id=f"num-{name}", min_width=150, **kwargs)

    def _fields(self, c, names: list[str], radio) -> None:
        """The settings ``names``: switches, then choices, then numbers on one row (the settings table's order)."""
        table = [settings.TABLE[name] for name in names]
        for setting in table:
            if setting.kind == "bool":
                c.form[setting.name] = gr.Checkbox(getattr(c.d, setting.name), label=setting.label,
                                                   info=setting.help, elem_id=setting.name.replace("_", "-"))
            elif setting.kind == "choice":
                radio(setting.name)
        with gr.Row():
            for setting in table:
                if setting.kind in ("int", "float"):
                    self._number(c, setting.name)

    # -- events ------------------------------------------------------------------------------------
    def _form_event(self, handler):
        """``handler(token, preset, values)`` as an event over the form's components (one dict of them)."""
        c = self.c

        def event(data: dict):
            return handler(data[c.token], data[c.preset], {name: data[comp] for name, comp in c.form.items()})

        event.__name__ = handler.__name__
        return event

    def _fill_event(self, data: dict):
        values = self.fill_preset(data[self.c.preset])
        outputs = [*self.c.form.values(), self.c.note]
        if values is None:
            return {component: gr.skip() for component in outputs}
        updates = {component: values[name] for name, component in self.c.form.items()}
        updates[self.c.form["window"]] = gr.HTML(value=values["window"], steps=values["num_steps"])
        updates[self.c.note] = values["note"]
        return updates

    def events(self, c, demo) -> None:
        lab, f = self.lab, c.form
        inputs = {c.token, c.preset, *f.values()}
        control = dict(api_visibility="private", concurrency_id="control", concurrency_limit=4)
        c.start.click(lab.guarded(self._form_event(self.start)), inputs, [c.notice, c.tabs], api_name="ui_start",
                      **control)
        c.duel.click(lab.guarded(self._form_event(self.duel)), inputs, [c.notice, c.tabs], api_name="ui_duel",
                     **control)
        c.stop.click(lab.guarded(self.stop), c.token, c.notice, api_name="ui_stop", **control)
        quiet = dict(show_progress="hidden", api_visibility="private")
        sampling = dict(concurrency_id="sampling", concurrency_limit=1)
        c.preset.change(self._fill_event, {c.preset}, [*f.values(), c.note], **quiet)
        memory = self._form_event(lambda token, preset, values: self.memory(preset, values))
        # the estimate follows the form: one event, so a preset that changes every field queues one estimate, not 20
        gr.on([demo.load, c.preset.change, *(component.change for component in f.values())], memory, inputs,
              c.memory, trigger_mode="always_last", concurrency_id="memory", concurrency_limit=1, **quiet)
        # a field edited away from the preset turns it to "custom" (judged on the fields' changes only: a preset's
        # own change would be judged against the fields it has not filled yet)
        gr.on([component.change for component in f.values()], self._form_event(self.preset_follows), inputs,
              c.preset, trigger_mode="always_last", **quiet)
        f["model"].change(train.model_info, f["model"], c.model_info, **quiet).then(
            self.strip, [f["model"], f["num_steps"]], f["window"], **quiet, **sampling)
        gr.on([f["reward"].change, f["model"].change, f["prompts"].change], self.reward_info,
              [f["reward"], f["model"], f["prompts"]], c.reward_info, trigger_mode="always_last", **quiet)
        profile_inputs = [f["model"], f["reward"], f["num_steps"]]
        for trigger in (f["reward"].change, f["model"].change, f["num_steps"].change):
            trigger(self.profile_view, profile_inputs, f["window"], **quiet)
        c.suggest.click(self.suggest, profile_inputs, [f["window"], c.profile_note], api_name="ui_suggest_window",
                        **quiet)
        c.compute.click(lab.guarded(self.compute_profile), [c.token, *profile_inputs],
                        [c.profile_note, c.profile_timer], show_progress="hidden", api_name="ui_compute_profile",
                        **control)
        c.profile_timer.tick(self.profile_tick, profile_inputs, [c.profile_note, f["window"], c.profile_timer], **quiet)
        f["method"].change(self.method_help, f["method"], c.method_help, **quiet)
        f["num_steps"].change(self.steps_changed, [f["num_steps"], f["window"]], f["window"], **quiet).then(
            self.strip, [f["model"], f["num_steps"]], f["window"], **quiet, **sampling)
        note_inputs = [f["method"], f["window"], f["num_steps"], f["epochs"], f["start_mode"]]
        for trigger in (f["method"].change, f["window"].change, f["num_steps"].change, f["epochs"].change,
                        f["start_mode"].change):
            trigger(self.note, note_inputs, c.note, **quiet)
        demo.load(self.choices, [f["model"], f["reward"]], [f["model"], c.model_info, f["reward"], c.reward_info],
                  **quiet).then(
            self.profile_view, profile_inputs, f["window"], **quiet).then(
            self.strip, [f["model"], f["num_steps"]], f["window"], **quiet, **sampling)
