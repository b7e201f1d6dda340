"""The Compare tab: two models or checkpoints sampled with the same seeds, their grids, metrics and projection."""

from __future__ import annotations

import gradio as gr

from explorer import presenter
from explorer.notices import safe
from explorer.views import common, compare, train


class CompareTab:
    def __init__(self, lab):
        self.lab = lab
        self.store = lab.store

    def sources(self, a=None, b=None):
        """The A and B dropdowns: every source; B the newest checkpoint and A its base model unless chosen."""
        choices = compare.source_choices(self.store, models=[self.lab.defaults.model])
        values = [c[1] for c in choices]
        first = values[0] if values else None
        latest = next((v for v in values if v.startswith("ckpt:")), first)
        b = b if b in values else latest
        if a not in values:
            a = compare.follow(self.store, b, None)[0] or first
        return gr.Dropdown(choices=choices, value=a), gr.Dropdown(choices=choices, value=b)

    def follow_run(self, run_id, a):
        """A run picked on the Runs tab: B its latest checkpoint, A its base model, the reward its own; the grids
        of the previous comparison cleared."""
        if not run_id:
            return (gr.skip(),) * 6
        try:
            run = self.store.get(run_id)
        except ValueError:
            return (gr.skip(),) * 6
        checkpoints = run.checkpoints()
        b = f"ckpt:{run.run_id}:{checkpoints[-1].name}" if checkpoints else None
        a = compare.follow(self.store, b, a)[0] if b else f"base:{run.config.get('model')}"
        source_a, source_b = self.sources(a, b)
        reward = run.config.get("reward")
        return (source_a, source_b, gr.Dropdown(choices=train.reward_choices(), value=reward) if reward else gr.skip(),
                None, None, "")

    def b_changed(self, b, a, reward):
        """B changed: the reward follows B's run and A its base model; stale grids are cleared."""
        follow_a, follow_reward = compare.follow(self.store, b, a)
        return (gr.skip() if follow_a in (None, a) else follow_a,
                gr.skip() if follow_reward in (None, reward) else
                gr.Dropdown(choices=train.reward_choices(), value=follow_reward), None, None)

    @safe(5)
    def compare(self, a, b, n, seed, reward, thumbnails=False, handover=0, token=""):
        presenter.check(token)
        mismatch = compare.conditioning_mismatch(compare.resolve_source(self.store, a),
                                                 compare.resolve_source(self.store, b))
        if mismatch:  # one line, not a mismatched picture
            return None, None, None, None, common.notice_html(mismatch, "warning")
        result = compare.compare(self.store, a, b, n=n, seed=seed, reward=reward or None,
                                 thumbnails=bool(thumbnails), handover=handover or 0)
        headers = ["metric", "A", "B", "B − A"]
        return (gr.Image(value=result.grid_a, label=f"A · {result.label_a}"),
                gr.Image(value=result.grid_b, label=f"B · {result.label_b}"),
                gr.Dataframe(value=result.table, headers=headers), result.figure,
                common.notice_html(f"{n} samples each, seeds {int(seed)}…{int(seed) + int(n) - 1}", "ok"))

    def layout(self, c) -> None:
        with gr.Tab("Compare", id="compare", elem_id="tab-compare") as c.compare_tab:
            gr.Markdown("Sample two models with the **same seeds**: the base model or any checkpoint of "
                        "any run. Lines in the scatter join the two samples of one seed. The hand-over "
                        "slider samples B's first S steps with its base model (S = 0: B itself; S = K: the "
                        "base model): one checkpoint traces a whole frontier without training.")
            with gr.Row():
                c.source_a = gr.Dropdown([], label="A", elem_id="compare-a", scale=3, allow_custom_value=True)
                c.source_b = gr.Dropdown([], label="B", elem_id="compare-b", scale=3, allow_custom_value=True)
                c.compare_n = gr.Number(32, label="Samples", precision=0, min_width=100, scale=1)
                c.compare_seed = gr.Number(0, label="First seed", precision=0, min_width=100, scale=1)
                c.compare_reward = gr.Dropdown([(c.d.reward, c.d.reward)], value=c.d.reward, label="Reward",
                                               scale=2, elem_id="compare-reward")
            with gr.Row():
                c.handover = gr.Slider(0, c.k, value=0, step=1, label="Hand-over step S (B)", scale=3,
                                       elem_id="compare-handover")
                c.compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-btn", scale=2)
                c.compare_thumbs = gr.Checkbox(False, label="images in the scatter", scale=1,
                                               elem_id="compare-thumbnails")
            c.compare_note = gr.HTML("")
            with gr.Row():
                # side by side at one scale: equal columns, each grid its column's width, no fixed height
                c.grid_a = gr.Image(label="A", type="pil", elem_id="grid-a", interactive=False, show_label=False)
                c.grid_b = gr.Image(label="B", type="pil", elem_id="grid-b", interactive=False, show_label=False)
            with gr.Row(equal_height=False):
                c.metrics_table = gr.Dataframe(headers=["metric", "A", "B", "B − A"], label="Metrics",
                                               elem_id="compare-metrics", interactive=False, scale=1,
                                               column_widths=["46%", "18%", "18%", "18%"])
                c.projection = gr.Plot(label="Embedding projection", elem_id="projection-plot", scale=1,
                                       show_label=False)  # its own title says it; the label covered it

    def events(self, c, demo) -> None:
        quiet = dict(show_progress="hidden", api_visibility="private")
        c.compare_tab.select(self.sources, [c.source_a, c.source_b], [c.source_a, c.source_b], **quiet)
        c.compare_tab.select(lambda r: gr.Dropdown(choices=train.reward_choices(), value=r), c.compare_reward,
                             c.compare_reward, **quiet)
        c.source_b.change(self.b_changed, [c.source_b, c.source_a, c.compare_reward],
                          [c.source_a, c.compare_reward, c.grid_a, c.grid_b], **quiet)
        c.run_pick.change(self.follow_run, [c.run_pick, c.source_a],
                          [c.source_a, c.source_b, c.compare_reward, c.grid_a, c.grid_b, c.compare_note], **quiet)
        c.compare_btn.click(self.lab.guarded(self.compare), [c.source_a, c.source_b, c.compare_n, c.compare_seed,
                                                             c.compare_reward, c.compare_thumbs, c.handover, c.token],
                            [c.grid_a, c.grid_b, c.metrics_table, c.projection, c.compare_note], api_name="ui_compare",
                            api_visibility="private", concurrency_id="sampling", concurrency_limit=1)
