"""HRF Explorer: the Gradio app (UI only: layout, events, polling; the work lives in hrf_core)."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402


def build_app() -> gr.Blocks:
    with gr.Blocks(title="HRF Explorer") as demo:
        gr.Markdown("# HRF Explorer\nLive DDPO vs HRF fine-tuning lab: coming soon.")
    return demo


def main() -> None:
    demo = build_app()
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        ssr_mode=False,
    )


if __name__ == "__main__":
    main()
