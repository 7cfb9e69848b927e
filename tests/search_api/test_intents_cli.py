"""`intents train|predict|eval` end to end with the real m3e-small INT8 model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.encoders.build import BuiltModel
from retrieval.encoders.registry import DEFAULT_MODEL_ID
from retrieval.routing.classifier import IntentClassifier
from retrieval.settings import Settings
from search_api.intents_cli import main
from tests.conftest import seed_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UTTERANCES = {
    "character": [
        "沈青崖的师父是谁",
        "谁杀了沈伯庸",
        "顾长庚有几个徒弟",
        "玄霜宫的宫主是哪位",
        "温照雪的妹妹是谁",
        "闻人鹤是谁的弟子",
        "赫连烬的徒弟是谁",
        "谁是青冥书院的山长",
    ],
    "location": [
        "栖岚山在哪里",
        "玄霜宫建在哪座峰上",
        "天机观坐落在哪里",
        "烟波城是座什么样的城",
        "去沧浪岛要坐多久的船",
        "藏经楼一共有几层",
        "葬神谷的入口在什么地方",
        "炎阙山在哪个州",
    ],
    "out_of_scope": [
        "今天天气怎么样",
        "帮我写一个Python快速排序",
        "推荐几部好看的电影",
        "红烧肉怎么做",
        "比特币现在多少钱",
        "怎么学好英语",
        "附近有什么好吃的餐厅",
        "你是机器人吗",
    ],
}


def write_lines(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_training_file(folder: Path) -> Path:
    """Every utterance of UTTERANCES with its intent, as a `{"text", "label"}` file."""
    return write_lines(
        folder / "train.jsonl", [{"text": t, "label": k} for k, ts in UTTERANCES.items() for t in ts]
    )


@pytest.fixture
def model_settings(settings: Settings, built_model: BuiltModel) -> Settings:
    seed_model(settings.data.dir, built_model)
    return settings


def run(args: list[str], settings: Settings, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("SEARCH_DATA_DIR", str(settings.data.dir))
    return main(args)


def test_train_predict_eval(
    model_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = write_training_file(tmp_path)
    held_out = [
        {"text": "沈青岩的父亲是谁", "label": "character"},
        {"text": "照影峰在栖岚山的什么位置", "label": "location"},
        {"text": "明天上海下雨吗", "label": "out_of_scope"},
    ]
    test = write_lines(tmp_path / "test.jsonl", held_out)
    out = tmp_path / "model"
    code = run(
        [
            "intents",
            "train",
            "--data",
            str(data),
            "--out",
            str(out),
            "--eval-data",
            str(test),
            "--frames",
            "0",
            "--quotes",
            "0",
            "--members",
            "2",
            "--gamma",
            "1.0",
            "--seed",
            "3",
        ],
        model_settings,
        monkeypatch,
    )
    assert code == 0
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["embedding_model_id"] == DEFAULT_MODEL_ID and meta["gamma"] == 1.0 and meta["seed"] == 3
    assert meta["intents"] == ["character", "location", "out_of_scope"] and meta["anchors"]
    assert {"report_macro_f1", "int8_macro_f1", "int8_argmax_agreement"} <= set(meta["metrics"])
    for name in (
        "head.npz",
        "labels.json",
        "history.json",
        "report/report.json",
        "report/report.md",
        "report/confusion.json",
        "report/confusion.png",
    ):
        assert (out / name).exists(), name
    assert IntentClassifier.load(out, model_id=DEFAULT_MODEL_ID).labels == (
        "character",
        "location",
        "out_of_scope",
    )
    # The head reads the query text as well (KB kinds of the names in it, cue n-grams), so the
    # table of names and kinds travels with the weights.
    assert meta["entity_kinds"] and meta["query_features"] > meta["ngram_buckets"] > 0
    assert (out / "features.json").exists()
    assert IntentClassifier.load(out, model_id=DEFAULT_MODEL_ID).needs_text

    predictions = tmp_path / "pred.jsonl"
    assert (
        run(
            ["intents", "predict", "--model", str(out), "--data", str(test), "--out", str(predictions)],
            model_settings,
            monkeypatch,
        )
        == 0
    )
    lines = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    assert [line["text"] for line in lines] == [row["text"] for row in held_out]
    assert all(set(line) == {"text", "label", "confidence"} and 0 < line["confidence"] <= 1 for line in lines)
    assert lines[2]["label"] == "out_of_scope"

    capsys.readouterr()
    assert (
        run(
            [
                "intents",
                "eval",
                "--model",
                str(out),
                "--data",
                str(test),
                "--precision",
                "int8",
                "--out",
                str(tmp_path / "eval"),
            ],
            model_settings,
            monkeypatch,
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert (
        "macro-F1" in printed and "int8 head" in printed and (tmp_path / "eval" / "confusion.json").exists()
    )


def test_a_head_for_another_embedding_model_is_refused(
    model_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = write_training_file(tmp_path)
    out = tmp_path / "model"
    assert (
        run(
            [
                "intents",
                "train",
                "--data",
                str(data),
                "--out",
                str(out),
                "--frames",
                "0",
                "--quotes",
                "0",
                "--no-anchors",
                "--no-entity-kinds",
                "--members",
                "1",
            ],
            model_settings,
            monkeypatch,
        )
        == 0
    )
    # No KB features asked for: only the n-gram block of the text features remains.
    trained = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert not trained["anchors"] and not trained["entity_kinds"]
    assert trained["query_features"] == trained["ngram_buckets"]
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta_path.write_text(json.dumps({**meta, "embedding_model_id": "bge-small-zh"}), encoding="utf-8")
    assert (
        run(["intents", "eval", "--model", str(out), "--data", str(data)], model_settings, monkeypatch) == 2
    )
    assert "bge-small-zh" in capsys.readouterr().err


def test_bad_input_is_a_usage_error(
    model_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "只有文本"}\n', encoding="utf-8")
    assert (
        run(
            ["intents", "train", "--data", str(bad), "--out", str(tmp_path / "m")],
            model_settings,
            monkeypatch,
        )
        == 2
    )
