"""Fixtures for the umT5 text side of the Wan pipeline:

    models/fixtures/text/tokenizer/        tokenizer.json of the kind the Wan checkpoints ship (Unigram,
                                           Precompiled nmt_nfkc + Strip + Replace normalizer, Metaspace,
                                           TemplateProcessing appending </s>), tokenizer_config.json, and
                                           io.json: prompts, diffusers' `prompt_clean` of them, and the ids /
                                           attention masks transformers' T5 tokenizer gives (raw and cleaned,
                                           max_length 512 and short ones)
    models/fixtures/text/tokenizer_saved/  the same tokenizer after transformers' own `save_pretrained`
                                           (its rebuilt pipeline), with the same io.json
    models/fixtures/text/<case>/           UMT5EncoderModel folders (save_pretrained) + io.safetensors:
                                           input_ids / attention_mask from the tokenizer above,
                                           last_hidden_state, prompt_embeds (diffusers'
                                           `_get_t5_prompt_embeds` itself) and the bucket of every
                                           relative_position (key - query) in [1-L, L-1]

Run with the reference venv's python:  python models/reference/text.py
`python models/reference/text.py --entities` prints the HTML entity table used by tokenizer.rs.
"""
import html.entities
import io
import json
import random
import shutil
import sys
import types

import sentencepiece
import torch
from diffusers.pipelines.wan.pipeline_wan_vace import WanVACEPipeline, prompt_clean
from ftfy.chardata import HTML_ENTITIES as FTFY_HTML_ENTITIES
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram
from transformers import AutoTokenizer, T5TokenizerFast, UMT5Config, UMT5EncoderModel

from common import FIXTURES, case_dir, save_io, seeded

EXTRA_IDS = 10
SHORT_MAX_LENGTH = 16

WORDS = (
    "a cat dog sitting on the windowsill at sunset cinematic lighting slow motion camera pan over mountains "
    "river forest city night rain neon street people walking car driving ocean waves beach sand golden hour "
    "portrait close up wide shot drone flying through clouds above snowy peaks astronaut horse running field "
    "flowers wind blowing hair smiling woman man child playing ball kitchen cooking steam coffee cup table "
    "Café crème brûlée à Zürich naïve façade über España niño garçon Ærøskøbing 日本語 猫 東京 寝ている 犬 山 "
    "Привет мир Γειά σου مرحبا שלום नमस्ते 🐱 🌅 ☀ 1234567890 , . ! ? ; : ( ) \" ' - — & < > / %"
).split()

PROMPTS = [
    "A cat sitting on the windowsill at sunset, cinematic lighting.",
    "",
    "   leading and trailing spaces   ",
    "multiple    spaces\tand\ttabs\nand\n\nnewlines\r\nwindows\rold mac",
    "Café crème brûlée à Zürich, naïve façade — über cool",
    "日本語の猫が東京で寝ている",
    "emoji 🐱🌅 and 👨\u200d👩\u200d👧 family, flags 🇯🇵, skin 👍🏽",
    "HTML: &amp; &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot; &#39;apos&#39; &#x27;hex&#x27; &hellip; &mdash; &nbsp;x",
    "double &amp;amp; escaped &amp;lt;tag&amp;gt; and &amp;quot;",
    "curly \u201cquotes\u201d and \u2018single\u2019 \u201alow\u2018 \u02bcmod \u201ffour",
    "ligatures \ufb01ne \ufb02ow \ufb03 \ufb06 and fullwidth \uff2c\uff2f\uff35\uff24\u3000\uff2e\uff2f\uff29\uff33\uff25\uff33 \uff76\uff80\uff76\uff85",
    "control\x00chars\x07 and \x1b[31mred\x1b[0m escapes\u200b zero width \ufeffbom \u206adeprecated \ufffcobj",
    "NFC: e\u0301 vs \u00e9, A\u030a vs \u00c5, decomposed n\u0303 and \u1e9b\u0323",
    "a < b &amp; c > d &lt;",
    "line one has <tag>\nline two &eacute; &EACUTE; &ampx &copy2024 &notin; &#150; &#x80; &#0; &#1114112; &#xD800;",
    "nbsp\u00a0here\u2003em\u3000ideographic\u2028sep\u2029para\x85nel\x0bvt\x0cff\x1cfs\x1dgs",
    "special tokens in text </s> <pad> <extra_id_0> and <unk> and <extra_id_9>",
    "C1 controls \x80 \x93quoted\x94 \x85 \x81 \x9f",
    "numbers 1234567890 and punctuation!?.,;:()[]{} 50% off/on",
    "\uff26\uff35\uff2c\uff2c\u3000\uff57\uff49\uff44\uff54\uff48\u3000\uff11\uff12\uff13 \uffe5\uffe0",
    "\u0132ssel \u01c5 \u0149 \u01c9",
    "Привет мир, Γειά σου, مرحبا, שלום, नमस्ते",
    "&AMP; &LT; &GT; &QUOT; &Amp; &SZLIG; &NTILDE; &nTILDE; &ampamp; &lt &gt; &thetasym; &upsih; &nosuchthing;",
    "a&#9;b&#10;c&nbsp;&nbsp;d&#13;e&#32;f&#59;g&#x3b;h&#1;i&#xFFFE;j",
    "&#12ab; &#xZZ; &#; &#x; &# 5; &#x1F600; &#128512 &#X41;&#65 &amp &AMP x&y &;",
    "\t\n \u3000 ",
    "kind of weird\u00a0\u00a0 spacing \u2009thin\u202fnarrow\u205fmath \u1680ogham",
    "Latin-1 caf\u00e9 r\u00e9sum\u00e9 \u00a0 na\u00efve \u00bfqu\u00e9? \u00a1s\u00ed! \u00d7\u00f7\u00b1",
    "¨ diaeresis ´ acute ¸ cedilla ½ fraction ™ ㈱ ℃ ① Ⅻ ﹏ ﹰ",
]


def long_prompt() -> str:
    shuffler = random.Random(1)
    return " ".join(shuffler.choice(WORDS) for _ in range(400))


def train_sentencepiece():
    """A tiny umT5-like Unigram model: vocabulary (piece, score) and the nmt_nfkc charsmap."""
    shuffler = random.Random(0)
    corpus = [" ".join(shuffler.choice(WORDS) for _ in range(shuffler.randint(3, 15))) for _ in range(4000)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        vocab_size=400,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
        num_threads=1,
    )
    proto = model.getvalue()
    processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    normalizer_spec = dict(_protobuf_fields(dict(_protobuf_fields(proto))[3]))
    return vocab, normalizer_spec[2]


def _protobuf_fields(buffer: bytes):
    """Top-level (field number, value) pairs of a protobuf message (no protobuf package in the venv)."""

    def varint(position):
        value, shift = 0, 0
        while True:
            byte = buffer[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, position

    position = 0
    while position < len(buffer):
        key, position = varint(position)
        wire_type = key & 7
        if wire_type == 0:
            value, position = varint(position)
        elif wire_type == 2:
            length, position = varint(position)
            value = buffer[position : position + length]
            position += length
        else:
            size = 4 if wire_type == 5 else 8
            value = buffer[position : position + size]
            position += size
        yield key >> 3, value


def write_tokenizer(directory, vocab, charsmap):
    """tokenizer.json as transformers' slow->fast T5 conversion writes it (what the Wan checkpoints ship)."""
    extra = [f"<extra_id_{i}>" for i in range(EXTRA_IDS - 1, -1, -1)]
    tokenizer = Tokenizer(Unigram(vocab + [(token, 0.0) for token in extra], unk_id=2, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(charsmap),
            normalizers.Strip(left=False, right=True),
            normalizers.Replace(Regex(" {2,}"), "▁"),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ["<pad>", "</s>", "<unk>"]])
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in sorted(extra)])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", 1)]
    )
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "T5Tokenizer",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "extra_ids": EXTRA_IDS,
        "additional_special_tokens": [f"<extra_id_{i}>" for i in range(EXTRA_IDS)],
        "model_max_length": 512,
        "clean_up_tokenization_spaces": True,
        "legacy": True,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def tokenize(tokenizer, prompts, max_length):
    """Exactly the call of diffusers' `_get_t5_prompt_embeds`."""
    out = tokenizer(
        prompts,
        padding="max_length",
        max_length=max_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
    )
    return out["input_ids"], out["attention_mask"]


def tokenizer_io(tokenizer):
    prompts = PROMPTS + [long_prompt()]
    cleaned = [prompt_clean(p) for p in prompts]
    cases = []
    for max_length in (512, SHORT_MAX_LENGTH, 3, 1):
        for clean in (False, True):
            ids, mask = tokenize(tokenizer, cleaned if clean else prompts, max_length)
            cases.append({"max_length": max_length, "clean": clean, "input_ids": ids, "attention_mask": mask})
    return {"prompts": prompts, "cleaned": cleaned, "cases": cases}


def tokenizer_fixtures():
    vocab, charsmap = train_sentencepiece()
    directory = FIXTURES / "text" / "tokenizer"
    shutil.rmtree(directory, ignore_errors=True)
    write_tokenizer(directory, vocab, charsmap)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    assert isinstance(tokenizer, T5TokenizerFast), type(tokenizer)
    reference = tokenizer_io(tokenizer)
    (directory / "io.json").write_text(json.dumps(reference, ensure_ascii=False) + "\n")

    saved = FIXTURES / "text" / "tokenizer_saved"
    shutil.rmtree(saved, ignore_errors=True)
    tokenizer.save_pretrained(saved)
    # Its tokenizer.json holds transformers' rebuilt pipeline (and the last call's truncation/padding);
    # the Rust test checks it against tokenizer/io.json too.
    assert tokenizer_io(AutoTokenizer.from_pretrained(saved)) == reference, "save_pretrained changed tokenization"
    return tokenizer


# Encoder cases: dims, head layouts (inner dim = num_heads * d_kv differing from d_model), layer counts,
# bucket layouts (num_buckets/max_distance, odd counts) and feed-forward variants all differ; every case
# has prompts longer than max_distance so the logarithmic buckets and their saturation are exercised.
ENCODER_CASES = {
    "encoder_base": dict(
        config=dict(d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2,
                    relative_attention_num_buckets=32, relative_attention_max_distance=20),
        words=(30, 9), max_length=40),
    "encoder_wide_heads": dict(
        config=dict(d_model=48, d_kv=16, num_heads=6, d_ff=80, num_layers=3,
                    relative_attention_num_buckets=16, relative_attention_max_distance=12,
                    layer_norm_epsilon=1e-5),
        words=(40, 22), max_length=56),
    "encoder_odd_buckets_gelu_erf": dict(
        config=dict(d_model=40, d_kv=5, num_heads=3, d_ff=72, num_layers=1,
                    relative_attention_num_buckets=10, relative_attention_max_distance=7,
                    feed_forward_proj="gated-gelu", dense_act_fn="gelu"),
        words=(25, 3), max_length=33),
    "encoder_default_buckets_relu": dict(
        config=dict(d_model=64, d_kv=16, num_heads=4, d_ff=96, num_layers=2,
                    relative_attention_num_buckets=32, relative_attention_max_distance=128,
                    feed_forward_proj="relu"),
        words=(130, 50), max_length=180, embed_tokens_name=True),
}


def randomize(model: UMT5EncoderModel, config: UMT5Config):
    """Every parameter matters: norms away from one, a strong relative bias, content-dependent attention."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("layer_norm.weight"):
                parameter.copy_(1.0 + 0.3 * torch.randn_like(parameter))
            elif name.endswith("relative_attention_bias.weight"):
                parameter.copy_(torch.randn_like(parameter))
            elif name.endswith(".q.weight"):
                parameter.mul_(config.d_kv**0.5)


def encoder_fixture(name, spec, tokenizer):
    torch.manual_seed(0)
    seeded(sum(map(ord, name)))
    vocab_size = len(tokenizer) + 7
    config = UMT5Config(vocab_size=vocab_size, dropout_rate=0.0, **spec["config"])
    model = UMT5EncoderModel(config).eval()
    randomize(model, config)
    directory = case_dir("text", name)
    model.save_pretrained(directory)
    if spec.get("embed_tokens_name"):
        # The other name checkpoints use for the embedding.
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(directory / "model.safetensors"))
        tensors["encoder.embed_tokens.weight"] = tensors.pop("shared.weight")
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
        reloaded = UMT5EncoderModel.from_pretrained(directory).eval()
        assert torch.equal(reloaded.shared.weight, model.shared.weight)

    shuffler = random.Random(name)
    prompts = [" ".join(shuffler.choice(WORDS) for _ in range(n)) for n in spec["words"]]
    max_length = spec["max_length"]
    ids, mask = tokenize(tokenizer, [prompt_clean(p) for p in prompts], max_length)
    input_ids, attention_mask = torch.tensor(ids), torch.tensor(mask)
    lengths = attention_mask.sum(1).tolist()
    assert lengths[0] > config.relative_attention_max_distance and lengths[0] != lengths[1], lengths

    pipeline = types.SimpleNamespace(tokenizer=tokenizer, text_encoder=model, _execution_device=torch.device("cpu"))
    with torch.no_grad():
        last_hidden_state = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        prompt_embeds = WanVACEPipeline._get_t5_prompt_embeds(
            pipeline, prompt=prompts, max_sequence_length=max_length, dtype=torch.float32
        )
        relative_position = torch.arange(1 - max_length, max_length)
        bucket = model.encoder.block[0].layer[0].SelfAttention._relative_position_bucket(relative_position)
    save_io(
        directory,
        {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "last_hidden_state": last_hidden_state,
            "prompt_embeds": prompt_embeds,
            "relative_position": relative_position,
            "relative_position_bucket": bucket,
        },
    )
    (directory / "prompts.json").write_text(json.dumps(prompts, ensure_ascii=False) + "\n")
    print(name, "lengths", lengths, "of", max_length, "vocab", vocab_size)


def print_entity_table():
    """Rust table for tokenizer.rs: HTML 4 entity names, apos and the legacy names html.unescape accepts
    without ';' (AMP, LT, ...), with and without ';' as html5 has them, with Python's html5 values, and
    ftfy's upper-case variants of those names."""
    legacy = {name for name in html.entities.html5 if not name.endswith(";")}
    names = set(html.entities.name2codepoint) | {"apos"} | legacy
    rows = {}
    for name, value in html.entities.html5.items():
        if name.rstrip(";") in names:
            rows[name] = value
    for entity, value in FTFY_HTML_ENTITIES.items():
        name = entity[1:]
        if name not in html.entities.html5 and name.rstrip(";").lower() in names:
            rows[name] = value
    for name in sorted(rows):
        if name not in html.entities.html5:
            kind = "FtfyUpper"
        else:
            kind = "Html5" if name.endswith(";") else "Html5Legacy"
        escaped = "".join(c if c.isalnum() and ord(c) < 128 else f"\\u{{{ord(c):x}}}" for c in rows[name])
        print(f'    ("{name}", "{escaped}", {kind}),')


if __name__ == "__main__":
    if "--entities" in sys.argv:
        print_entity_table()
        sys.exit()
    tokenizer = tokenizer_fixtures()
    for case_name, case_spec in ENCODER_CASES.items():
        encoder_fixture(case_name, case_spec, tokenizer)
