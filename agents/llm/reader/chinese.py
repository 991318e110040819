"""Chinese (简体) requests: the keywords rewritten into the English words the phrase patterns read.

``最大化 CoCrFeMnNi 合金的硬度，每种元素介于 0.05 和 0.35 之间，40 次实验，每批 8 个`` becomes, in the
working text, ``maximise CoCrFeMnNi alloy 的 hardness, each element between 0.05 and 0.35, 40
experiments, batches of 8``. Chinese word order that English has no pattern for ("X 的 Y": the Y of X;
"使 X 的 Y 最高") is read by the patterns of :mod:`agents.llm.reader.patterns` that accept ``的``.
A Chinese word with no rule here stays Chinese, is read by no pattern and is quoted in the refusal:
an unknown property (``韧脆转变温度``) is refused, never guessed.
"""

from __future__ import annotations

import re

from agents.llm.reader.text import Rewrite

__all__ = ["CHINESE_REWRITES", "CJK_WORD", "HAS_CJK", "chinese_number"]

#: Finds a Chinese character or full-width punctuation: only such requests are rewritten.
HAS_CJK = re.compile("[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
#: A character of a Chinese word (not punctuation).
CJK_WORD = re.compile("[\u3400-\u9fff]")

_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def chinese_number(text: str) -> int:
    """A whole number in Chinese numerals below 1000: ``四十`` is 40, ``一百二十`` is 120."""
    total, digit = 0, 0
    for char in text:
        if char in _DIGITS:
            digit = _DIGITS[char]
        elif char == "十":
            total += (digit or 1) * 10
            digit = 0
        elif char == "百":
            total += (digit or 1) * 100
            digit = 0
    return total + digit


# Longest first within each group; each replacement is padded with spaces, as Chinese has none.
_WORDS: list[tuple[str, str]] = [
    # "在 Cu、Ag 和 Zr 中": among
    (r"在(?=[^在中。；;]*中)", "among"),
    (r"(?<=[\w\s])中(?=\s*(?:寻找|找|求|确定|,|$))", ""),
    # counts that are phrases of their own
    ("一次一个|每次一个|一个一个地?|逐个|逐一|依次", "one at a time"),
    # properties
    ("离子电导率", "ionic conductivity"),
    ("电导率|导电率|电导", "conductivity"),
    ("电阻率", "resistivity"),
    ("方块电阻|方阻|薄层电阻", "sheet resistance"),
    ("热导率|导热系数", "thermal conductivity"),
    ("塞贝克系数|泽贝克系数", "Seebeck coefficient"),
    ("带隙|禁带宽度|能隙", "band gap"),
    ("维氏硬度", "Vickers hardness"),
    ("硬度", "hardness"),
    ("屈服强度", "yield strength"),
    ("抗拉强度", "tensile strength"),
    ("强度", "strength"),
    ("断裂韧性", "fracture toughness"),
    ("韧性", "toughness"),
    ("延伸率", "elongation"),
    ("选择性", "selectivity"),
    ("荧光量子产率|光致发光量子产率", "photoluminescence quantum yield"),
    ("产率|收率", "yield"),
    ("透光率|透过率|透射率", "transmittance"),
    ("密度", "density"),
    ("光电转换效率|能量转换效率|转换效率", "power conversion efficiency"),
    ("效率", "efficiency"),
    ("比容量|容量", "capacity"),
    ("过电位|过电势", "overpotential"),
    ("热稳定性", "thermal stability"),
    ("稳定性", "stability"),
    ("成本", "cost"),
    ("腐蚀速率", "corrosion rate"),
    ("降解速率", "degradation rate"),
    ("粘度|黏度", "viscosity"),
    ("迁移率", "mobility"),
    ("催化活性", "catalytic activity"),
    ("活性", "activity"),
    ("寿命", "lifetime"),
    ("矫顽力", "coercivity"),
    ("磁化强度", "magnetization"),
    ("吸光度", "absorbance"),
    ("介电常数", "dielectric constant"),
    ("粗糙度", "roughness"),
    ("光电流", "photocurrent"),
    # what to optimise
    ("最大化", "maximise"),
    ("最小化", "minimise"),
    ("提高|提升|增大|增强", "increase"),
    ("降低|减小|减少|减低", "reduce"),
    ("尽可能高|尽量高|越高越好", "as high as possible"),
    ("尽可能低|尽量低|越低越好", "as low as possible"),
    ("尽可能大|尽量大|越大越好", "as large as possible"),
    ("尽可能小|尽量小|越小越好", "as small as possible"),
    ("找到|找出|寻找|确定|求", "find"),
    ("使|让|令", "make"),
    # bounds: "最高 15%" is an upper bound, "硬度最高" a superlative
    (r"最高(?=\s*[\d.])|最多|至多|不超过|不高于|不大于|小于等于|小于或等于", "at most"),
    (r"最低(?=\s*[\d.])|最少|至少为|至少|不少于|不低于|不小于|大于等于|大于或等于", "at least"),
    ("小于|低于", "below"),
    ("大于|高于|超过", "above"),
    ("最高", "highest"),
    ("最低", "lowest"),
    ("最大", "largest"),
    ("最小", "smallest"),
    ("最好|最佳|最优", "best"),
    ("最快", "fastest"),
    ("最慢", "slowest"),
    ("介于", "between"),
    (r"在(?=[^在]*之间)", "between"),
    ("之间", ""),
    ("从", "from"),
    ("到|至", "to"),
    # the sum rule, units and the basis
    ("各组分之和为|组分之和为|组成之和为|各组分总和为", "components sum to"),
    ("之和为|之和等于|总和为|加起来为|合计为|总计为|相加为|加和为", "sum to"),
    ("之和|总和", "together"),
    ("原子百分比|原子百分数|原子%", "at.%"),
    ("质量百分比|质量百分数|重量百分比|质量%", "wt.%"),
    ("摩尔百分比|摩尔%", "mol.%"),
    ("质量分数", "mass fractions"),
    ("摩尔分数", "mole fractions"),
    ("体积分数", "volume fractions"),
    ("按质量计?", "by mass"),
    ("按摩尔计?", "by mole"),
    ("按体积计?", "by volume"),
    ("百分比|百分数", "percent"),
    ("分数", "fractions"),
    ("为余量|作为余量|余量为|是余量|余量", "the balance"),
    ("的含量|含量", "content"),
    # components
    ("高熵合金", "high-entropy alloy"),
    ("合金", "alloy"),
    ("薄膜", "film"),
    ("涂层", "coating"),
    ("共混物", "blend"),
    ("混合物", "mixture"),
    ("复合材料", "composite"),
    ("体系", "system"),
    ("催化剂", "catalyst"),
    ("溶液", "solution"),
    ("电解质", "electrolyte"),
    ("配比|比例", "ratio"),
    ("组成|成分|配方", "composition"),
    ("每种元素|每个元素|各元素|各个元素", "each element"),
    ("每种组分|每个组分|各组分|各个组分", "each component"),
    ("掺杂", "doped with"),
    # budget, batch size, seed
    ("次实验|个实验|次试验|组实验|轮实验", "experiments"),
    ("个样品|个样本|种样品", "samples"),
    ("次测量", "measurements"),
    ("组成分|种组成|个组成|个配比|组配比|种配比|组配方|种配方", "compositions"),
    ("实验预算|预算", "budget"),
    ("批量大小|批次大小|批大小|批量", "batch size"),
    ("每批|每组|每次", "batches of"),
    ("每轮", "rounds of"),
    ("随机种子|种子", "seed"),
    ("目标值", "target"),
    ("直到", "until"),
    ("达到", "reaches"),
    # joining words
    ("以及|和|与|及|跟", "and"),
    ("或者|或", "or"),
    ("为|是|等于", "is"),
    ("我们想|我想|我们需要|我需要|我们希望|希望|想要|需要|请|进行|做|尝试|试试", ""),
    ("一共|总共|共|个|种|目标", ""),
]
_PUNCTUATION = {"，": ",", "、": ",", "；": ";", "：": ":", "（": "(", "）": ")", "。": ".", "？": "?"}
_PUNCTUATION |= {"！": "!", "～": "~", "％": "%", "－": "-", "＋": "+", "＝": "=", "“": '"', "”": '"'}


def _rules() -> list[Rewrite]:
    rules: list[Rewrite] = [(re.compile(re.escape(c)), f"{e} ") for c, e in _PUNCTUATION.items()]
    rules.append((re.compile("[０-９]"), lambda m: str(ord(m.group(0)) - ord("０"))))
    # numerals before the words, so that "四十次实验" is "40 experiments"; "一次一个" is a phrase
    rules.append((re.compile("一次一个|每次一个|一个一个地?"), " one at a time "))
    rules.append(
        (re.compile("[一二两三四五六七八九十百]+(?=[次个批组轮种份]|\\s*$|\\s*[,，;；])"),
         lambda m: f" {chinese_number(m.group(0))} ")
    )
    rules += [(re.compile(chinese), f" {english} " if english else " ") for chinese, english in _WORDS]
    rules.append((re.compile("的"), " 的 "))
    return rules


#: The rewrites, in the order :class:`agents.llm.reader.text.WorkingText` applies them.
CHINESE_REWRITES: list[Rewrite] = _rules()
